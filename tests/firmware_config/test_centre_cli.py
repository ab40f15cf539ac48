"""`hailong fleet init / add-centre / add-counter / set-counter / list counters / show`: a centre from an
empty fleet to provisionable terminals without editing TOML by hand; bad input refused, files untouched."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from broker.fleet.registry import load_registry
from hailong.cli import main


def run(fleet: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), *args])
    assert result.exit_code == code, result.output
    return result.output


def test_centre_from_empty_fleet_to_provisioned_terminals(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    run(fleet, "init")
    assert load_registry(fleet).centres == {}
    run(fleet, "add-centre", "hn-tthc", "--name", "Trung tâm Phục vụ hành chính công thành phố Hà Nội",
        "--province", "ha-noi", "--counters", "20")
    reg = load_registry(fleet)
    assert [q.id for q in reg.counters_of("hn-tthc")] == [f"q{n:02d}" for n in range(1, 21)]
    assert reg.counters[("hn-tthc", "q07")].label == "Quầy 7" and reg.centres["hn-tthc"].has_qms
    run(fleet, "set-counter", "q01", "--centre", "hn-tthc", "--label", "Quầy 1 – Đất đai", "--service", "dat-dai")
    run(fleet, "add-counter", "q21", "--centre", "hn-tthc", "--label", "Quầy 21 – Tư pháp", "--service", "tu-phap")
    reg = load_registry(fleet)
    assert reg.counters[("hn-tthc", "q01")].label == "Quầy 1 – Đất đai"
    assert reg.counters[("hn-tthc", "q01")].services == ("dat-dai",)
    assert reg.counters[("hn-tthc", "q21")].services == ("tu-phap",)
    for n in range(1, 3):
        run(fleet, "add-device", f"hn-q{n:02d}", "--centre", "hn-tthc", "--counter", f"q{n:02d}")
    listing = run(fleet, "list", "counters", "--centre", "hn-tthc").splitlines()
    assert len(listing) == 21 and listing[0].split()[:3] == ["hn-tthc", "q01", "hn-q01"]
    assert listing[2].split()[:3] == ["hn-tthc", "q03", "-"]
    shown = run(fleet, "show", "centre", "hn-tthc")
    assert "Quầy 1 – Đất đai" in shown and "hn-q02" in shown and "ha-noi" in shown
    assert "credentials none yet" in run(fleet, "show", "device", "hn-q01")
    out = run(fleet, "provision", "--centre", "hn-tthc", "--out", str(tmp_path / "b"), "--broker-host", "mqtt.hn",
              "--pip-spec", "hailong[device]")
    assert "provisioned 2 terminal(s)" in out
    assert "credentials issued" in run(fleet, "show", "device", "hn-q01")


def test_centre_without_queue_system_gets_officers_per_counter(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    run(fleet, "init")
    out = run(fleet, "add-centre", "dn-x", "--name", "Bộ phận một cửa quận Hải Châu", "--province", "da-nang",
              "--no-qms", "--walkup", "--counters", "2")
    assert "set-counter q01 --centre dn-x --officer" in out
    run(fleet, "add-device", "dn-x-q01", "--centre", "dn-x", "--counter", "q01")
    # without an officer at the counter, provisioning refuses (the terminal would not know whom to credit)
    res = run(fleet, "provision", "dn-x-q01", "--out", str(tmp_path / "b"), "--pip-spec", "x", code=1)
    assert "officer" in res
    run(fleet, "add-officer", "ho-thi-mai", "--name", "Hồ Thị Mai", "--centre", "dn-x")
    run(fleet, "set-counter", "q01", "--centre", "dn-x", "--officer", "ho-thi-mai")
    run(fleet, "provision", "dn-x-q01", "--out", str(tmp_path / "b"), "--pip-spec", "x")
    assert "credited at q01" in run(fleet, "show", "officer", "ho-thi-mai")
    run(fleet, "set-counter", "q01", "--centre", "dn-x", "--officer", "-")
    assert load_registry(fleet).counters[("dn-x", "q01")].officer is None


def test_bad_centre_and_counter_edits_are_refused_and_change_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    run(fleet, "init")
    run(fleet, "add-centre", "qn", "--name", "Trung tâm QN", "--province", "quang-ninh")
    before = (fleet / "centres.toml").read_bytes()
    cases = [
        (("add-centre", "qn", "--name", "again", "--province", "quang-ninh"), "centre.qn: already exists"),
        (("add-centre", "x", "--name", "X", "--province", "Quảng Ninh"), "centre.x.province"),
        (("add-centre", "y", "--name", "Y", "--province", "p", "--counters", "0"), "--counters"),
        (("add-counter", "q01", "--centre", "qn", "--label", "dup"), "centre.qn.counter.q01: already exists"),
        (("add-counter", "q02", "--centre", "nope", "--label", "Q"), "centre.nope: no such centre"),
        (("add-counter", "Q 2", "--centre", "qn", "--label", "Q"), "centre.qn.counter.Q 2"),
        (("set-counter", "q01", "--centre", "qn", "--officer", "ghost"), "officer 'ghost' is not in"),
        (("set-counter", "q01", "--centre", "qn"), "nothing to change"),
        (("show", "centre", "nope"), "no centre 'nope'"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), *args])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert (fleet / "centres.toml").read_bytes() == before, args
