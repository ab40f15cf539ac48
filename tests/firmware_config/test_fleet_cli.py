"""``hailong fleet`` registry edits and ``hailong broker render`` from the command line."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.fleet.passwd import parse_passwd
from broker.fleet.registry import load_registry
from firmware_config.fleetedit import render_devices, render_officers
from hailong.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-fleet"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "fleet")
    return tmp_path / "fleet"


def run(fleet: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["fleet", "--fleet", str(fleet), *args])
    assert result.exit_code == code, result.output
    return result.output


def test_rewriting_the_registry_round_trips(fleet: Path, tmp_path: Path) -> None:
    reg = load_registry(fleet)
    copy = tmp_path / "copy"
    shutil.copytree(fleet, copy)
    (copy / "devices.toml").write_text(render_devices(reg.devices.values()), encoding="utf-8")
    (copy / "officers.toml").write_text(render_officers(reg.officers.values()), encoding="utf-8")
    again = load_registry(copy)
    assert again.devices == reg.devices and again.officers == reg.officers


def test_add_move_retire_devices_and_officers(fleet: Path) -> None:
    assert "qn-q01" in run(fleet, "list")
    run(fleet, "add-officer", "ngo-van-tu", "--name", "Ngô Văn Tư", "--centre", "qn-tthc")
    assert "Ngô Văn Tư" in run(fleet, "list", "officers", "--centre", "qn-tthc")
    run(fleet, "move-officer", "ngo-van-tu", "--centre", "dn-tthc")
    run(fleet, "retire-officer", "le-thi-huong")
    officers = run(fleet, "list", "officers", "--centre", "dn-tthc")
    assert "ngo-van-tu" in officers and "le-thi-huong" not in officers
    assert "le-thi-huong" in run(fleet, "list", "officers", "--all")
    # one active terminal per counter: moving onto an occupied counter is refused, file untouched
    before = (fleet / "devices.toml").read_text()
    out = run(fleet, "move-device", "qn-q03", "--counter", "q01", code=1)
    assert "device.qn-q03.counter: counter 'q01' of centre 'qn-tthc' already has active device 'qn-q01'" in out
    assert (fleet / "devices.toml").read_text() == before
    run(fleet, "retire-device", "qn-q01")
    run(fleet, "move-device", "qn-q03", "--counter", "q01")
    run(fleet, "add-device", "qn-q09", "--centre", "qn-tthc", "--counter", "q03", "--hardware", "buttons",
        "--pin", "score_1=5", "--pin", "score_2=6", "--pin", "score_3=13", "--pin", "score_4=19")
    reg = load_registry(fleet)
    assert reg.devices["qn-q01"].retired and reg.devices["qn-q03"].counter == "q01"
    assert reg.devices["qn-q09"].pins == {"score_1": 5, "score_2": 6, "score_3": 13, "score_4": 19}
    assert reg.officers["ngo-van-tu"].name == "Ngô Văn Tư" and reg.officers["le-thi-huong"].retired
    listing = run(fleet, "list")
    assert "qn-q01" not in listing and "qn-q09" in listing and "qn-q01" in run(fleet, "list", "--all")


@pytest.mark.parametrize(("args", "message"), [
    (("add-device", "qn-q01", "--centre", "qn-tthc", "--counter", "q01"), "device.qn-q01: already exists"),
    (("add-device", "x1", "--centre", "hue", "--counter", "q01"), "device.x1.centre: centre 'hue' is not in"),
    (("add-device", "x1", "--centre", "dn-tthc", "--counter", "q01", "--hardware", "buttons"),
     "device.x1.pins: hardware 'buttons' needs a pin map"),
    (("add-device", "x1", "--centre", "qn-tthc", "--counter", "q01", "--pin", "score_1=99"),
     "device.x1.pins: pin score_1 = 99 is not a usable BCM GPIO (2..27)"),
    (("add-device", "x1", "--centre", "qn-tthc", "--counter", "q01", "--pin", "score_1"), "expected NAME=BCM"),
    (("add-officer", "x1", "--name", "", "--centre", "qn-tthc"), "officer.x1.name: String should have at least"),
    (("move-officer", "nobody", "--centre", "qn-tthc"), "officer.nobody: no such officer"),
    (("revoke", "nope"), "device.nope: no such device"),
])
def test_bad_edits_fail_with_the_key_and_problem(fleet: Path, args: tuple[str, ...], message: str) -> None:
    before = {n: (fleet / n).read_text() for n in ("devices.toml", "officers.toml")}
    out = run(fleet, *args, code=2 if "NAME=BCM" in message else 1)
    assert message in out
    assert {n: (fleet / n).read_text() for n in before} == before


def test_render_revoke_rotate_via_cli(fleet: Path, tmp_path: Path) -> None:
    out = tmp_path / "broker"
    run(fleet, "provision", "qn-q01", "--out", str(tmp_path / "b"))  # certificate (and no password)
    run(fleet, "provision", "qn-q02", "--mode", "password", "--out", str(tmp_path / "b"))
    res = CliRunner().invoke(main, ["broker", "render", "--fleet", str(fleet), "--out", str(out),
                                    "--hostname", "mqtt.qn.example.vn"])
    assert res.exit_code == 0, res.output
    for name in ("mosquitto.conf", "passwd", "acl", "ca.crt", "server.crt", "server.key", "crl.pem"):
        assert (out / name).is_file(), name
    for secret in ("passwd", "server.key"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600
    conf = (out / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "persistence true", "max_queued_messages 1000000",
                 "set_tcp_nodelay true", "use_identity_as_username true", "require_certificate true",
                 "crlfile /etc/mosquitto/hailong/crl.pem", "listener 8883", "listener 8884"):
        assert line in conf.splitlines(), line
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "server.crt")],
                         capture_output=True, text=True, check=True).stdout
    assert "DNS:mqtt.qn.example.vn" in san
    users = parse_passwd((out / "passwd").read_text())
    # the ingest's worker users (svc.ingest.w1 .. w3: ingest_workers = 4 by default), each its own secret
    workers = {f"svc.ingest.w{k}" for k in range(1, 4)}
    assert {"svc.ingest", *workers, "svc.admin", "svc.web", "svc.qms.qn-tthc", "qn-q02"} == set(users)
    assert "user qn-q01" in (out / "acl").read_text()
    # secrets never on the terminal output
    state = fleet / "state"
    assert (state / ".gitignore").read_text().strip().endswith("*")
    for pw in (state / "secrets").iterdir():
        assert pw.read_text().strip() not in res.output
    old_hash = users["qn-q02"]
    rotated = run(fleet, "rotate", "qn-q02", "--broker-out", str(out))
    assert "reload the broker" in rotated
    assert parse_passwd((out / "passwd").read_text())["qn-q02"] != old_hash
    run(fleet, "revoke", "qn-q01", "--broker-out", str(out))
    assert "user qn-q01" not in (out / "acl").read_text()
    crl = subprocess.run(["openssl", "crl", "-noout", "-text", "-in", str(out / "crl.pem")],
                         capture_output=True, text=True, check=True).stdout
    assert crl.count("Serial Number:") == 1  # qn-q01's certificate
    run(fleet, "revoke", "qn-q02", "--broker-out", str(out))  # password-only terminal
    assert "qn-q02" not in parse_passwd((out / "passwd").read_text())
    assert "revoked" in run(fleet, "list", "--all")


def test_help_works_without_a_fleet_and_commands_ask_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HAILONG_FLEET", raising=False)
    helped = CliRunner().invoke(main, ["fleet", "provision", "--help"])
    assert helped.exit_code == 0 and "--centre" in helped.output
    missing = CliRunner().invoke(main, ["fleet", "list"])
    assert missing.exit_code == 2 and "HAILONG_FLEET" in missing.output


def test_add_device_and_officer_append_without_rewriting(fleet: Path) -> None:
    """One terminal or officer is appended (the file's comments and other tables kept byte for byte),
    and the result is the registry a full validated rewrite would hold."""
    devices, officers = (fleet / "devices.toml").read_text(), (fleet / "officers.toml").read_text()
    run(fleet, "add-counter", "q04", "--centre", "qn-tthc", "--label", "Quầy 4 – Tư pháp")
    run(fleet, "add-device", "qn-q04", "--centre", "qn-tthc", "--counter", "q04", "--hardware", "both",
        "--pin", "score_1=5", "--pin", "score_2=6", "--pin", "score_3=13", "--pin", "score_4=19")
    run(fleet, "add-officer", "ngo-van-tu", "--name", "Ngô Văn Tư", "--centre", "qn-tthc")
    assert (fleet / "devices.toml").read_text().startswith(devices)
    assert (fleet / "officers.toml").read_text().startswith(officers)
    assert "# Counter terminals." in (fleet / "devices.toml").read_text()  # the hand-written comment stays
    reg = load_registry(fleet)
    assert reg.devices["qn-q04"].pins == {"score_1": 5, "score_2": 6, "score_3": 13, "score_4": 19}
    assert reg.officers["ngo-van-tu"].name == "Ngô Văn Tư"
    # the second terminal on q04 and an id that would break out of its TOML table are refused, file untouched
    before = (fleet / "devices.toml").read_text()
    out = run(fleet, "add-device", "qn-q05", "--centre", "qn-tthc", "--counter", "q04", code=1)
    assert "device.qn-q05.counter: counter 'q04' of centre 'qn-tthc' already has active device 'qn-q04'" in out
    out = run(fleet, "add-device", "x]\n[centre.evil", "--centre", "qn-tthc", "--counter", "q04", code=1)
    assert "must match" in out
    out = run(fleet, "add-officer", "ngo-van-tu", "--name", "Ngô Văn Tư", "--centre", "qn-tthc", code=1)
    assert "officer.ngo-van-tu: already exists" in out
    out = run(fleet, "add-device", "qms", "--centre", "qn-tthc", "--counter", "q04", code=1)
    assert "device.qms: device id 'qms' is reserved" in out
    assert (fleet / "devices.toml").read_text() == before


SCANNED = {  # devices.toml text -> whether the line scan reads it (else tomllib does)
    "as the tools write it": ('[device.a]\ncentre = "c"\ncounter = "q01"\npins = { score_1 = 5 }\n', True),
    "trailing comments": ('# fleet\n[device.a]  # unit 1\ncentre = "c" # here\nretired = false # no\n', True),
    "dotted key": ('[device.a]\ncentre = "c"\npins.score_1 = 5\n', False),
    "quoted key": ('[device.a]\n"centre" = "c"\n', False),
    "literal string": ("[device.a]\ncentre = 'c'\n", False),
    "multi-line array": ('[device.a]\ncentre = "c"\nservices = [\n  "x",\n]\n', False),
    "multi-line string": ('[device.a]\nnote = """\n[device.b]\n"""\ncentre = "c"\n', False),
    "sub-table": ('[device.a]\ncentre = "c"\n[device.a.pins]\nscore_1 = 5\n', False),
    "key before any table": ('centre = "c"\n[device.a]\n', False),
    "table defined twice": ('[device.a]\ncentre = "c"\n[device.a]\ncounter = "q"\n', False),
    "string with a hash": ('[device.a]\ncentre = "c#1"\n', True),
}


@pytest.mark.parametrize("case", sorted(SCANNED))
def test_the_line_scan_reads_exactly_what_tomllib_reads_or_steps_aside(case: str) -> None:
    import tomllib

    from firmware_config.fleet_append import scan_tables

    text, readable = SCANNED[case]
    got = scan_tables(text, "device", ("centre", "counter", "retired"))
    assert (got is not None) == readable
    if got is not None:
        want = {k: {f: v for f, v in body.items() if f in ("centre", "counter", "retired")}
                for k, body in tomllib.loads(text)["device"].items()}
        assert got == want


def test_scan_matches_tomllib_on_the_example_and_rendered_registries(fleet: Path) -> None:
    import tomllib

    from firmware_config.fleet_append import scan_tables

    reg = load_registry(fleet)
    keys = ("centre", "counter", "retired")
    for text in ((fleet / "devices.toml").read_text(), render_devices(reg.devices.values())):
        want = {k: {f: v for f, v in b.items() if f in keys} for k, b in tomllib.loads(text)["device"].items()}
        assert scan_tables(text, "device", keys) == want
    for text in ((fleet / "officers.toml").read_text(), render_officers(reg.officers.values())):
        assert scan_tables(text, "officer", ("centre",)) == {
            k: {"centre": b["centre"]} for k, b in tomllib.loads(text)["officer"].items()}


def test_add_device_on_a_hand_written_file_the_scan_cannot_read(fleet: Path) -> None:
    """A devices.toml in another TOML style is parsed by tomllib: the same checks, nothing missed."""
    (fleet / "devices.toml").write_text(
        '[device.qn-q01]\ncentre = "qn-tthc"\ncounter = "q01"\npins.score_1 = 5\n'
        "[device.qn-q02]\ncentre = 'qn-tthc'\ncounter = 'q02'\n", encoding="utf-8")
    (fleet / "centres.toml").write_text((fleet / "centres.toml").read_text() +
                                        '\n[centre.qn-tthc.counter.q09]\nlabel = "Quầy 9"\n', encoding="utf-8")
    out = run(fleet, "add-device", "x1", "--centre", "qn-tthc", "--counter", "q02", code=1)
    assert "counter 'q02' of centre 'qn-tthc' already has active device 'qn-q02'" in out
    out = run(fleet, "add-device", "qn-q01", "--centre", "qn-tthc", "--counter", "q09", code=1)
    assert "device.qn-q01: already exists" in out
    run(fleet, "add-device", "x1", "--centre", "qn-tthc", "--counter", "q09")
    assert load_registry(fleet).devices["x1"].counter == "q09"
