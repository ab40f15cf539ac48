"""deploy/: the compose file, server systemd units and example ingest config agree with what is rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from click.testing import CliRunner

from hailong.cli import main
from ingest.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_mounts_the_rendered_broker_files(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana", "ingest"}
    mosq = services["mosquitto"]
    assert mosq["image"].startswith("eclipse-mosquitto:2")
    assert "./broker:/mosquitto/config:ro" in mosq["volumes"]
    assert {"8883:8883", "8884:8884"} <= set(mosq["ports"])
    assert services["ingest"]["command"][:2] == ["ingest", "run"]
    # render exactly as the compose comment says, and every file the conf names exists
    fleet = tmp_path / "fleet"
    shutil.copytree(DEPLOY / "example-fleet", fleet)
    out = tmp_path / "broker"
    res = CliRunner().invoke(main, ["broker", "render", "--fleet", str(fleet), "--out", str(out), "--target",
                                    "docker", "--hostname", "mqtt.qn.example.vn", "--hostname", "mosquitto"])
    assert res.exit_code == 0, res.output
    conf = (out / "mosquitto.conf").read_text()
    assert mosq["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    named = set(re.findall(r"/mosquitto/config/(\S+)", conf))
    assert named == {"passwd", "acl", "ca.crt", "server.crt", "server.key", "crl.pem"}
    assert all((out / n).is_file() for n in named)
    assert "persistence_location /mosquitto/data/" in conf
    assert "mosquitto-data:/mosquitto/data" in mosq["volumes"]
    # the ingest's MQTT password secret is the file the render wrote
    secret = compose["secrets"]["ingest_mqtt_password"]["file"]
    assert secret == "./fleet/state/secrets/svc.ingest.password"
    assert (fleet / "state" / "secrets" / "svc.ingest.password").is_file()


def test_example_ingest_config_loads(tmp_path: Path) -> None:
    # the example names the compose secret /run/secrets/ingest_mqtt_password; here env points at a real file
    (tmp_path / "pw").write_text("from-the-secret-file\n", encoding="utf-8")
    env = {"HAILONG_INGEST__MQTT__PASSWORD_FILE": str(tmp_path / "pw")}
    cfg = load_config(DEPLOY / "ingest.example.toml", environ=env)
    assert cfg.mqtt.username == "svc.ingest" and cfg.mqtt.tls and cfg.share_group == "hl-ingest"
    assert cfg.mqtt.secret() == "from-the-secret-file"


def test_server_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "hailong").write_text("#!/bin/sh\n")
    (venv / "bin" / "hailong").chmod(0o755)
    unit = tmp_path / "hailong-ingest@1.service"
    unit.write_text((DEPLOY / "systemd" / "hailong-ingest@.service").read_text().replace("/opt/hailong", str(venv)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # a missing `hailong` user is fine here (created on the server); anything else is not
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and "User" not in ln]
    assert res.returncode == 0 and problems == [], res.stdout + res.stderr
    dropin = (DEPLOY / "systemd" / "mosquitto-hailong.conf").read_text()
    assert "ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/hailong/mosquitto.conf" in dropin
    assert "ExecReload=/bin/kill -HUP $MAINPID" in dropin
