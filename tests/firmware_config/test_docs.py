"""docs/technician.md and docs/ingest.md cannot drift from the tools: the guide's ```sh blocks run in
order as one script, with every system path moved under a temp dir. Recorded instead of run (a test
cannot change this machine's services, users or packages): systemctl, apt-get, useradd, chown. `influx`
is the real CLI against a private InfluxDB. Then what the guide promises is checked on the results."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from broker.fleet.registry import load_registry
from broker.mosquitto.acl import service_users
from hailong.localstack import InfluxServer
from ingest.config import load_config
from storage.influxql import InfluxQL

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "technician.md"
INGEST_DOC = ROOT / "docs" / "ingest.md"
# every absolute path the guide writes to; each is moved under the test's root
SYSTEM_PATHS = ("/etc/hailong", "/etc/mosquitto", "/etc/systemd", "/etc/grafana", "/etc/default", "/etc/influxdb",
                "/var/lib/hailong", "/var/lib/grafana", "/opt/hailong", "/usr/local/bin",
                "/run/credentials")
RECORDED = ("systemctl", "apt-get", "useradd", "chown")
pytestmark = pytest.mark.timeout(600)


def blocks(doc: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", doc.read_text(encoding="utf-8"), re.S | re.M)


def moved(text: str, root: Path) -> str:
    for p in SYSTEM_PATHS:
        text = re.sub(rf"(?<![\w/.-]){re.escape(p)}(?=/|\b)", f"{root}{p}", text)
    return text


def _stubs(root: Path, influx_port: int) -> Path:
    stubs = root / "stubs"
    stubs.mkdir()
    for name in RECORDED:
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {root}/recorded.log\n')
    influx = shutil.which("influx")
    assert influx, "influx CLI missing: apt-get install influxdb-client (scripts/install-system-deps.sh)"
    (stubs / "influx").write_text(f'#!/bin/sh\nexec {influx} -host 127.0.0.1 -port {influx_port} "$@"\n')
    for f in stubs.iterdir():
        f.chmod(0o755)
    return stubs


def test_technician_guide_runs_as_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc" / "influxdb").mkdir(parents=True)
    debian_conf = Path("/etc/influxdb/influxdb.conf")
    (root / "etc/influxdb/influxdb.conf").write_text(
        debian_conf.read_text() if debian_conf.exists() else "[http]\n  # auth-enabled = false\n")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDocsTestKey tech@laptop\n")
    sh = blocks(GUIDE, "sh")
    assert len(sh) >= 8, "the guide lost its command blocks"
    script = ["set -euo pipefail"]
    for i, block in enumerate(sh, 1):
        script += [f"echo '### guide block {i}' >&2", moved(block, root)]
    influx = InfluxServer(tmp_path / "influxdb").start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAILONG_")}
        env |= {"HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PATH": f"{_stubs(root, influx.port)}:{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
        run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=540)
        where = re.findall(r"### guide block \d+", run.stderr)
        block = where[-1] if where else "?"
        assert run.returncode == 0, f"failed in {block}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

        # InfluxDB: the users and database exist, authentication is switched on in the config
        users = {r["user"] for r in InfluxQL(influx.url, "hailong").rows("SHOW USERS")}
        assert {"admin", "hailong_ingest", "hailong_grafana", "hailong_report"} <= users
        assert re.search(r"^\s*auth-enabled = true", (root / "etc/influxdb/influxdb.conf").read_text(), re.M)
    finally:
        influx.stop()

    recorded = (root / "recorded.log").read_text().splitlines()
    for line in ("systemctl restart mosquitto", "systemctl enable --now hailong-ingest@svc.ingest",
                 "systemctl reload mosquitto hailong-ingest@svc.ingest", "chown -R mosquitto:mosquitto"):
        assert any(r.startswith(line) for r in recorded), line
    fleet = root / "etc/hailong/fleet"
    reg = load_registry(fleet)
    assert len(reg.counters_of("qn-tthc")) == 22 and reg.counters[("qn-tthc", "q01")].label == "Quầy 1 – Đất đai"
    # 20 terminals + the button unit q30 + q21, q02 replaced by q02b; q03 revoked
    active = {d.id for d in reg.active_devices("qn-tthc")}
    assert len(active) == 22 and "qn-q02" not in active and "qn-q02b" in active
    # the accessible button unit: LEDs and buzzer wired, spoken clips in its bundle, [audio] on
    unit = tomllib.loads((home / "bundles/qn-q30/device.toml").read_text())
    assert unit["gpio"]["leds"] == {"1": 12, "2": 16, "3": 17, "4": 22} and unit["gpio"]["buzzer_pin"] == 23
    assert unit["audio"] == {"enabled": True, "voice": "vi-vn-x-south"}
    assert (home / "bundles/qn-q30/rootfs/usr/local/lib/hailong/sounds/thanks.wav").is_file()
    broker = root / "etc/mosquitto/hailong"
    # the ACL names each live terminal's own topics: retired qn-q02 and revoked qn-q03 are gone
    acl = (broker / "acl").read_text()
    assert "hl/v1/qn-tthc/qn-q05/rating" in acl and "hl/v1/qn-tthc/qn-q02b/rating" in acl
    assert "/qn-q02/" not in acl and "/qn-q03/" not in acl
    crl = x509.load_pem_x509_crl((broker / "crl.pem").read_bytes())
    assert len(list(crl)) >= 3  # qn-q02 retired, qn-q03 revoked, qn-q01's old certificate rotated out
    cert = x509.load_pem_x509_certificate((broker / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mqtt.qn.example.vn"]
    for dev in ("qn-q01", "qn-q20", "qn-q21", "qn-q02b"):
        cfg = tomllib.loads((home / "bundles" / dev / "device.toml").read_text())
        assert cfg["mqtt"]["url"] == "mqtts://mqtt.qn.example.vn:8884", dev
        assert list((home / "bundles" / dev / "rootfs/usr/local/lib/hailong/wheels").glob("hailong-*.whl")), dev
    assert (root / "etc/systemd/system/mosquitto.service.d/hailong.conf").is_file()
    assert (root / "etc/systemd/system/hailong-ingest@.service").is_file()
    assert (root / "opt/hailong/bin/hailong").is_file()
    assert len(list((root / "var/lib/grafana/dashboards/hailong").glob("*.json"))) >= 5
    assert (root / "etc/grafana/provisioning/datasources/hailong.yaml").is_file()
    # the province rollout from deploy/example-province.csv: 3 centres, 9 terminals bundled, in the broker's ACL
    assert {"qn-halong", "qn-uongbi", "qn-vandon"} <= set(reg.centres)
    assert reg.counters[("qn-vandon", "q01")].officer == "ly-van-duong"  # no queue system: credited per counter
    for dev, centre in (("qn-hl-q01", "qn-halong"), ("qn-ub-q03", "qn-uongbi"), ("qn-vd-q02", "qn-vandon")):
        cfg = tomllib.loads((home / "bundles" / dev / "device.toml").read_text())
        assert cfg["centre"] == centre and cfg["mqtt"]["url"] == "mqtts://mqtt.qn.example.vn:8884", dev
        assert f"hl/v1/{centre}/{dev}/rating" in acl, dev
    assert "systemctl reload mosquitto hailong-ingest@svc.ingest" in recorded

    # the ingest config the guide wrote loads with the password from its env file, as the unit gives it
    env_file = dict(line.split("=", 1) for line in (root / "etc/hailong/secrets/ingest.env").read_text().split())
    cfg = load_config(root / "etc/hailong/ingest.toml", environ=env_file)
    assert cfg.mqtt.username in service_users(reg) and cfg.mqtt.ca_file is not None and cfg.mqtt.ca_file.is_file()
    assert cfg.mqtt.secret() == (fleet / "state/secrets/svc.ingest.password").read_text().strip()
    assert cfg.influx.password is not None
    assert cfg.influx.password.get_secret_value() == (root / "etc/hailong/secrets/influx-ingest").read_text().strip()


def test_ingest_doc_example_matches_the_rendered_broker(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hailong.cli import main

    fleet = tmp_path / "fleet"
    shutil.copytree(ROOT / "deploy" / "example-fleet", fleet)
    out = tmp_path / "broker"
    res = CliRunner().invoke(main, ["broker", "render", "--fleet", str(fleet), "--out", str(out),
                                    "--hostname", "mqtt.qn.example.vn"])
    assert res.exit_code == 0, res.output
    (toml_block,) = blocks(INGEST_DOC, "toml")
    root = tmp_path / "root"
    text = moved(toml_block, root)
    cfg_path = root / "etc/hailong/ingest.toml"
    cfg_path.parent.mkdir(parents=True)
    cfg_path.write_text(text, encoding="utf-8")
    (tmp_path / "root" / "etc" / "fleet").symlink_to(fleet)
    creds = root / "run/credentials/hailong-ingest.service"
    creds.mkdir(parents=True)
    (creds / "mqtt").write_text("secret\n")
    (creds / "influx").write_text("token\n")
    cfg = load_config(cfg_path, environ={})
    assert cfg.mqtt.username in service_users(load_registry(fleet)), cfg.mqtt.username
    assert cfg.mqtt.ca_file is not None and (out / cfg.mqtt.ca_file.name).is_file(), cfg.mqtt.ca_file
    assert cfg.mqtt.url.endswith(":8883")  # the rendered username/password listener
    (run_block,) = blocks(INGEST_DOC, "sh")
    assert run_block.split()[:4] == ["hailong", "-v", "ingest", "run"]
    help_run = CliRunner().invoke(main, ["ingest", "run", "--help"])
    assert help_run.exit_code == 0 and "--config" in help_run.output
