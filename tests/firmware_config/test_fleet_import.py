"""``hailong fleet import FILE.csv``: every kind of bad row reported with its line number, nothing written
unless every row is good, re-import of the same sheet a no-op, conflicts with the registry refused."""

from __future__ import annotations

import shutil
import tomllib
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.fleet.registry import load_registry
from firmware_config.fleet_import import CsvImportError, _Merge, _stages, import_csv, read_rows
from firmware_config.fleetedit import update_device
from hailong.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "example-fleet"
PROVINCE = ROOT / "deploy" / "example-province.csv"
FILES = ("centres.toml", "devices.toml", "officers.toml")
HEADER = ("centre,centre_name,province,qms,walkup,counter,counter_label,services,device,hardware,pins,officer,"
          "officer_name")
NEW = "qn-moi,Trung tâm Phục vụ hành chính công phường Mới,quang-ninh,có,không"  # a new centre's first 5 cells


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "fleet")
    return tmp_path / "fleet"


def snapshot(fleet: Path) -> dict[str, bytes]:
    return {n: (fleet / n).read_bytes() for n in FILES}


def sheet(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "sheet.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# (rows after the header, {line: substring of its problem}); line 1 is the header
BAD = {
    "centre id upper case": (["QN-Moi,Tên,quang-ninh,,,q01,Quầy 1,,,,,,"],
                             {2: "centre: id 'QN-Moi' must match [a-z0-9-]{1,32} (ids are lower case: 'qn-moi'?)"}),
    "centre empty": ([",,,,,q01,Quầy 1,,,,,,"], {2: "centre: empty"}),
    "qms not yes/no": (["qn-moi,Tên,quang-ninh,maybe,,q01,Quầy 1,,,,,,"],
                       {2: "qms: 'maybe' is not yes/no (có/không)"}),
    "new centre without name": (["qn-moi,,quang-ninh,,,q01,Quầy 1,,,,,,"],
                                {2: "centre qn-moi: centre_name: empty (a new centre needs it)"}),
    "new centre name too long": ([f"qn-moi,{'Trung tâm ' * 8},quang-ninh,,,q01,Quầy 1,,,,,,"],
                                 {2: "centre qn-moi: centre_name: String should have at most 64 characters"}),
    "bad province id": (["qn-moi,Tên,Quảng Ninh,,,q01,Quầy 1,,,,,,"], {2: "centre qn-moi: province: String should"}),
    "unknown time zone": (["qn-moi,Tên,quang-ninh,,,q01,Quầy 1,,,,,,,Asia/Hanoi"],
                          {2: "centre qn-moi: timezone: unknown time zone 'Asia/Hanoi'"}),
    "new centre without a counter": ([f"{NEW},,,,,,,nv-a,Nguyễn Văn A"],
                                     {2: "centre qn-moi: a new centre needs at least one counter row"}),
    "new counter without label": ([f"{NEW},q01,,,,,,,"], {2: "counter qn-moi/q01: counter_label: empty"}),
    "counter label differs between rows": ([f"{NEW},q01,Quầy 1,,,,,,", "qn-moi,,,,,q01,Quầy Một,,,,,,"],
                                           {3: "counter qn-moi/q01: counter_label 'Quầy Một' differs from line 2"}),
    "centre name differs between rows": ([f"{NEW},q01,Quầy 1,,,,,,", "qn-moi,Tên khác,,,,q02,Quầy 2,,,,,,"],
                                         {3: "centre qn-moi: centre_name 'Tên khác' differs from line 2"}),
    "bad service id": ([f"{NEW},q01,Quầy 1,Đất đai,,,,,"], {2: "counter qn-moi/q01: services: service 'Đất'"}),
    "device without counter": ([f"{NEW},q01,Quầy 1,,,,,,", "qn-moi,,,,,,,,x9,,,,"],
                               {3: "device: given without a counter"}),
    "reserved device id": ([f"{NEW},q01,Quầy 1,,qms,,,,"], {2: "device: id 'qms' is reserved"}),
    "buttons without pins": ([f"{NEW},q01,Quầy 1,,x1,buttons,,,"],
                             {2: "device x1: pins: hardware 'buttons' needs a pin map"}),
    "unknown hardware": ([f"{NEW},q01,Quầy 1,,x1,keyboard,,,"], {2: "device x1: hardware: Input should be"}),
    "pins not NAME=BCM": ([f"{NEW},q01,Quầy 1,,x1,both,score_1:5,,"], {2: "pins: 'score_1:5' is not NAME=BCM"}),
    "pin out of range": ([f"{NEW},q01,Quầy 1,,x1,both,score_1=99,,"],
                         {2: "device x1: pins: pin score_1 = 99 is not a usable BCM GPIO (2..27)"}),
    "pin used twice": ([f"{NEW},q01,Quầy 1,,x1,both,score_1=5 score_2=5,,"], {2: "GPIO 5 used by both"}),
    "two terminals on one counter": ([f"{NEW},q01,Quầy 1,,x1,,,,", "qn-moi,,,,,q01,,,x2,,,,"],
                                     {3: "device x2: counter qn-moi/q01 already has active device 'x1' (line 2)"}),
    "terminal on a counter the registry fills": (["qn-tthc,,,,,q01,,,x1,,,,"],
                                                 {2: "counter qn-tthc/q01 already has active device 'qn-q01' "
                                                     "(the registry)"}),
    "terminal moved by the sheet": (["qn-tthc,,,,,q02,,,qn-q01,,,,"],
                                    {2: "device qn-q01: the registry has counter 'q01', the file 'q02'"}),
    "centre renamed by the sheet": (["qn-tthc,Tên mới,,,,q01,,,,,,,"],
                                    {2: "centre qn-tthc: the registry has centre_name"}),
    "officer moved by the sheet": ([f"{NEW},q01,Quầy 1,,,,,nguyen-thi-lan,"],
                                   {2: "officer nguyen-thi-lan: the registry has centre 'qn-tthc', the file 'qn-moi'"}),
    "new officer without name": ([f"{NEW},q01,Quầy 1,,,,,nv-a,"], {2: "officer nv-a: officer_name: empty"}),
    "officer name without id": ([f"{NEW},q01,Quầy 1,,,,,,Nguyễn Văn A"],
                                {2: "officer_name: given without an officer id"}),
    "no queue system, two officers at one counter": (
        ["qn-moi,Tên,quang-ninh,không,,q01,Quầy 1,,,,,nv-a,Nguyễn Văn A", "qn-moi,,,,,q01,,,,,,nv-b,Nguyễn Văn B"],
        {3: "centre qn-moi has no queue system, so one officer is credited per counter; line 2 names 'nv-a'"}),
    "row with only the centre id": ([f"{NEW},q01,Quầy 1,,,,,,", "qn-moi,,,,,,,,,,,,"],
                                             {3: "a row needs a counter, an officer or the centre's details"}),
    "more cells than columns": ([f"{NEW},q01,Quầy 1,,,,,,,,extra"], {2: "15 cells but the header has 14 columns"}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_bad_row_is_reported_with_its_line_and_nothing_changes(fleet: Path, tmp_path: Path, case: str) -> None:
    rows, expected = BAD[case]
    # good rows after the bad ones: they are checked too, and not written either
    good = ["qn-tot,Trung tâm tốt,quang-ninh,,,q01,Quầy 1,,qn-tot-q01,,,,", "qn-tot,,,,,q02,Quầy 2,,qn-tot-q02,,,,"]
    path = sheet(tmp_path, *rows, *good, header=HEADER + ",timezone")
    before = snapshot(fleet)
    with pytest.raises(CsvImportError) as err:
        import_csv(fleet, path)
    assert err.value.lines == sorted(expected), str(err.value)
    for line, problem in expected.items():
        assert any(n == line and problem in p for n, p in err.value.problems), (problem, str(err.value))
    assert snapshot(fleet) == before
    assert not list(fleet.glob(".fleet-edit-*")) and not list(fleet.glob(".*.tmp"))


@pytest.mark.parametrize(("header", "problem"), [
    (HEADER + ",ghi_chu", "unknown column 'ghi_chu'"),
    (HEADER.replace("centre,", "trung_tam,", 1), "no 'centre' column"),
    (HEADER + ",device", "column 'device' appears twice"),
])
def test_a_bad_header_stops_at_line_1(fleet: Path, tmp_path: Path, header: str, problem: str) -> None:
    before = snapshot(fleet)
    with pytest.raises(CsvImportError) as err:
        import_csv(fleet, sheet(tmp_path, f"{NEW},q01,Quầy 1,,,,,,", header=header))
    assert err.value.lines == [1] and problem in str(err.value)
    assert snapshot(fleet) == before


def test_a_bad_sheet_for_a_new_fleet_creates_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "new-fleet"
    with pytest.raises(CsvImportError):
        import_csv(fleet, sheet(tmp_path, "qn-moi,,quang-ninh,,,q01,Quầy 1,,,,,,"))
    import_csv(fleet, PROVINCE, dry_run=True)
    assert not fleet.exists()


def test_not_utf8_names_the_line(fleet: Path, tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes((HEADER + "\n" + f"{NEW},q01,Quầy 1,,,,,,\n").encode("utf-8")
                     + "qn-moi,,,,,q02,Quây 2,,,,,,\n".encode("latin-1"))  # a legacy 8-bit export
    with pytest.raises(CsvImportError) as err:
        import_csv(fleet, path)
    assert err.value.lines == [3] and "not UTF-8" in str(err.value)


def test_three_bad_rows_refuse_the_whole_sheet_via_the_cli(fleet: Path, tmp_path: Path) -> None:
    """Acceptance: a 40-row sheet with 3 bad rows: exit 1, exactly those 3 line numbers, nothing written."""
    rows = ["qn-moi,Trung tâm Phục vụ hành chính công phường Mới,quang-ninh,,,q01,Quầy 1,,qn-moi-q01,,,,"]
    rows += [f"qn-moi,,,,,q{n:02d},Quầy {n},,qn-moi-q{n:02d},,,cb-{n:02d},Cán bộ số {n}" for n in range(2, 41)]
    rows[9] = rows[9].replace("qn-moi-q10", "QN-Moi-q10")           # line 11: bad device id
    rows[19] = rows[19].replace("Quầy 20", "")                       # line 21: new counter without a label
    rows[29] = rows[29].replace(",,,cb-30", ",buttons,,cb-30")        # line 31: buttons without pins
    path = sheet(tmp_path, *rows)
    before = snapshot(fleet)
    res = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "import", str(path)])
    assert res.exit_code == 1, res.output
    lines = sorted({int(part.split(":")[1]) for part in res.output.split() if part.startswith(f"{path}:")})
    assert lines == [11, 21, 31], res.output
    assert "3 bad row(s); nothing was imported" in res.output
    assert snapshot(fleet) == before


def test_example_province_imports_then_reimports_as_a_no_op(tmp_path: Path) -> None:
    fleet = tmp_path / "fresh"  # import creates the fleet directory
    res = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "import", str(PROVINCE)])
    assert res.exit_code == 0, res.output
    assert "added 3 centre(s), 9 counter(s), 9 terminal(s), 8 officer(s)" in res.output
    reg = load_registry(fleet)
    assert reg.centres["qn-vandon"].name == "Trung tâm Phục vụ hành chính công đặc khu Vân Đồn"
    assert not reg.centres["qn-vandon"].has_qms and reg.centres["qn-vandon"].walkup_allowed
    assert reg.centres["qn-halong"].has_qms and not reg.centres["qn-halong"].walkup_allowed
    assert reg.counters[("qn-halong", "q02")].services == ("tu-phap", "ho-tich")
    assert reg.devices["qn-hl-q03"].pins == {"score_1": 5, "score_2": 6, "score_3": 13, "score_4": 19, "served": 26}
    # without a queue system the row's officer is credited at the counter; with one, only registered
    assert reg.counters[("qn-vandon", "q01")].officer == "ly-van-duong"
    assert reg.counters[("qn-halong", "q01")].officer is None
    assert reg.officers["do-thi-ngoc-anh"].centre == "qn-halong"  # an officer-only row
    before = snapshot(fleet)
    again = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "import", str(PROVINCE)])
    assert again.exit_code == 0 and "nothing to import" in again.output, again.output
    assert snapshot(fleet) == before


def test_dry_run_writes_nothing_and_partial_overlap_adds_only_the_new(fleet: Path, tmp_path: Path) -> None:
    before = snapshot(fleet)
    out = import_csv(fleet, PROVINCE, dry_run=True)
    assert out.devices == 9 and snapshot(fleet) == before
    # rows the registry already holds (identical) beside new ones: only the new ones are added
    path = sheet(tmp_path, "qn-tthc,Trung tâm Phục vụ hành chính công tỉnh Quảng Ninh,quang-ninh,có,,q01,,,qn-q01,,,"
                           "nguyen-thi-lan,Nguyễn Thị Lan",
                 "qn-tthc,,,,,q04,Quầy 4 – Tư pháp,tu-phap,qn-q04,,,ngo-van-tu,Ngô Văn Tư")
    out = import_csv(fleet, path)
    assert (out.centres, out.counters, out.devices, out.officers) == (0, 1, 1, 1)
    reg = load_registry(fleet)
    assert reg.devices["qn-q04"].counter == "q04" and reg.officers["ngo-van-tu"].name == "Ngô Văn Tư"


def test_excel_vietnamese_export_semicolons_bom_and_decomposed_diacritics(fleet: Path, tmp_path: Path) -> None:
    """Excel with Vietnamese regional settings writes ';' and a BOM; macOS writes NFD (decomposed) text."""
    name = unicodedata.normalize("NFD", "Trung tâm Phục vụ hành chính công phường Mới")
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + HEADER.replace(",", ";") + "\r\n"
                      + f"qn-moi;{name};quang-ninh;Có;Không;q01;\"Quầy 1; Đất đai\";dat-dai;qn-moi-q01;;;;\r\n"
                      ).encode("utf-8"))
    import_csv(fleet, path)
    reg = load_registry(fleet)
    assert reg.centres["qn-moi"].name == unicodedata.normalize("NFC", name) != name
    assert reg.counters[("qn-moi", "q01")].label == "Quầy 1; Đất đai"


def test_a_quoted_cell_spanning_lines_keeps_line_numbers_right(fleet: Path, tmp_path: Path) -> None:
    path = sheet(tmp_path, f'{NEW},q01,"Quầy 1\nĐất đai",,,,,,', "qn-moi,,,,,q02,,,,,,,")
    with pytest.raises(CsvImportError) as err:
        import_csv(fleet, path)
    assert err.value.lines == [4]  # the second record starts on line 4 (the first spans 2 and 3)


def test_retired_ids_are_not_reused(fleet: Path, tmp_path: Path) -> None:
    update_device(load_registry(fleet), "qn-q03", retired=True)
    before = snapshot(fleet)
    with pytest.raises(CsvImportError) as err:
        import_csv(fleet, sheet(tmp_path, "qn-tthc,,,,,q03,,,qn-q03,,,,"))
    assert "device qn-q03: retired in the registry; give the new unit a new id" in str(err.value)
    assert snapshot(fleet) == before


def test_every_write_stage_leaves_a_registry_that_loads(fleet: Path, tmp_path: Path) -> None:
    """Files are replaced one by one; a crash between two must still leave a fleet the tools load."""
    path = sheet(tmp_path, "qn-moi,Tên,quang-ninh,không,,q01,Quầy 1,,qn-moi-q01,,,nv-a,Nguyễn Văn A")
    reader, fatal = read_rows(path)
    assert not fatal
    reg = load_registry(fleet)
    merge = _Merge(reg, reader)
    merge.run()
    stages = _stages(reg, merge)
    assert len(stages) == 4  # the counter credits a new officer: centres are written again at the end
    state = tmp_path / "crash"
    shutil.copytree(fleet, state)
    for stage in stages:
        for name, text in stage.items():
            (state / name).write_text(text, encoding="utf-8")
        load_registry(state)
    final = load_registry(state)
    assert final.counters[("qn-moi", "q01")].officer == "nv-a"
    assert tomllib.loads((state / "devices.toml").read_text())["device"]["qn-moi-q01"]["counter"] == "q01"


def test_import_provision_render_then_a_terminal_rates_on_the_real_broker(tmp_path: Path) -> None:
    """End to end as the technician does it: the example sheet imported into a fresh fleet, one centre
    provisioned in password mode with --broker-out, the rendered broker started (real Mosquitto): an
    imported terminal logs in with its bundle's password and CA, its rating reaches the ingest's user,
    and it cannot publish as its neighbour; a terminal of a centre not yet provisioned cannot log in."""
    import os

    from broker.fleet.credentials import FleetState
    from broker.fleet.passwd import parse_passwd
    from broker.mosquitto.render import load_options
    from hailong.localstack import MosquittoServer, free_port
    from tests.broker.fleet_broker import FleetBroker, close, probe
    from tests.support.waiting import wait_until

    fleet, out, bundles = tmp_path / "fleet", tmp_path / "broker", tmp_path / "bundles"
    (out / "data").mkdir(parents=True)
    cli = CliRunner()
    res = cli.invoke(main, ["fleet", "--fleet", str(fleet), "import", str(PROVINCE)])
    assert res.exit_code == 0, res.output
    run_as = 'run_as = "root"\n' if os.geteuid() == 0 else ""
    (fleet / "broker.toml").write_text(
        f'hostnames = ["mqtt.qn.example.vn", "127.0.0.1"]\nbind = "127.0.0.1"\ntls_port = {free_port()}\n'
        f'cert_port = {free_port()}\nconf_dir = "{out}"\ndata_dir = "{out / "data"}"\n'
        f'log_dest = "file {tmp_path}/mosquitto.log"\n{run_as}', encoding="utf-8")
    res = cli.invoke(main, ["fleet", "--fleet", str(fleet), "provision", "--centre", "qn-halong", "--mode", "password",
                            "--out", str(bundles), "--broker-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "provisioned 4 terminal(s)" in res.output and "broker files re-rendered" in res.output
    users = parse_passwd((out / "passwd").read_text())
    assert {"qn-hl-q01", "qn-hl-q02", "qn-hl-q03", "qn-hl-q04"} <= set(users) and "qn-ub-q01" not in users
    acl = (out / "acl").read_text()
    for dev, centre in (("qn-hl-q01", "qn-halong"), ("qn-vd-q01", "qn-vandon")):  # ACL covers every import
        assert f"topic write hl/v1/{centre}/{dev}/rating" in acl
    opt = load_options(fleet)
    server = MosquittoServer(tmp_path / "run", port=opt.tls_port, conf_text=(out / "mosquitto.conf").read_text())
    server.start()
    state = FleetState.for_fleet(fleet)
    broker = FleetBroker(fleet, out, state, opt, server)
    bundle = bundles / "qn-hl-q01" / "rootfs" / "etc" / "hailong"
    assert (bundle / "ca.crt").read_bytes() == (out / "ca.crt").read_bytes()
    ingest = terminal = stranger = None
    try:
        ingest = probe(broker, "ingest", user="svc.ingest", password=state.password("svc.ingest"))
        assert ingest.connect_rc is not None and not ingest.connect_rc.is_failure
        ingest.client.subscribe("hl/v1/qn-halong/+/rating", qos=1)
        wait_until(lambda: ingest is not None and len(ingest.suback) == 1, 10, what="ingest SUBACK")
        terminal = probe(broker, "terminal", user="qn-hl-q01", password=(bundle / "mqtt.pass").read_text().strip(),
                         ca=bundle / "ca.crt")
        assert terminal.connect_rc is not None and not terminal.connect_rc.is_failure, terminal.connect_rc
        terminal.client.publish("hl/v1/qn-halong/qn-hl-q02/rating", b"as-neighbour", qos=1)
        terminal.client.publish("hl/v1/qn-halong/qn-hl-q01/rating", b"own", qos=1).wait_for_publish(10)
        wait_until(lambda: ingest is not None and ingest.payloads(), 10, what="the rating at the ingest")
        assert ingest.payloads() == [b"own"]  # FIFO from one publisher: the denied one would have come first
        stranger = probe(broker, "stranger", user="qn-ub-q01", password="guess")
        assert stranger.connect_rc is not None and stranger.connect_rc.is_failure
    finally:
        close(*(p for p in (ingest, terminal, stranger) if p is not None))
        server.stop()


def test_every_column_is_documented_and_the_example_uses_them() -> None:
    from firmware_config.fleet_import import COLUMNS

    doc = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    table = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert set(COLUMNS) <= table, set(COLUMNS) - table
    header = PROVINCE.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert set(header) <= set(COLUMNS) and len(set(header)) >= len(COLUMNS) - 1  # all but timezone


def test_a_centre_row_of_its_own_then_its_counters(fleet: Path, tmp_path: Path) -> None:
    path = sheet(tmp_path, "qn-moi,Trung tâm Phục vụ hành chính công phường Mới,quang-ninh,không,có,,,,,,,,",
                 "qn-moi,,,,,q01,Quầy 1,,qn-moi-q01,,,nv-a,Nguyễn Văn A")
    out = import_csv(fleet, path)
    assert (out.centres, out.counters, out.devices, out.officers) == (1, 1, 1, 1)
    reg = load_registry(fleet)
    assert reg.centres["qn-moi"].walkup_allowed and reg.counters[("qn-moi", "q01")].officer == "nv-a"


def test_a_counter_nobody_is_credited_at_is_imported_with_a_warning(fleet: Path, tmp_path: Path) -> None:
    """Without a queue system a counter needs its officer before its terminal can be provisioned: said at import."""
    path = sheet(tmp_path, "qn-moi,Tên,quang-ninh,không,,q01,Quầy 1,,qn-moi-q01,,,,")
    res = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), "import", str(path)])
    assert res.exit_code == 0, res.output
    assert ("warning: line 2: counter qn-moi/q01: centre qn-moi has no queue system and the counter no officer"
            in res.output)
    assert "qn-moi-q01" in load_registry(fleet).devices
