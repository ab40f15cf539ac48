"""deploy/: the federation's units and timers pass systemd-analyze, the example configs load."""

from __future__ import annotations

import subprocess
from pathlib import Path

from federation.config import load_config as load_federation
from national.config import load_config as load_national

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_units_and_timers_verify(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "hailong").write_text("#!/bin/sh\n")
    (venv / "bin" / "hailong").chmod(0o755)
    names = {"hailong-federation@.service": "hailong-federation@2.service",
             "hailong-federation-recent.timer": "hailong-federation-recent.timer",
             "hailong-federation-full.timer": "hailong-federation-full.timer",
             "hailong-national.service": "hailong-national.service"}
    for src, dst in names.items():
        text = (DEPLOY / "systemd" / src).read_text().replace("/opt/hailong", str(venv))
        (tmp_path / dst).write_text(text)
    (tmp_path / "hailong-federation@35.service").write_text((tmp_path / "hailong-federation@2.service").read_text())
    units = [str(tmp_path / n) for n in (*names.values(), "hailong-federation@35.service")]
    res = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and "User" not in ln]
    assert res.returncode == 0 and problems == [], res.stdout + res.stderr
    assert "Unit=hailong-federation@2.service" in (tmp_path / "hailong-federation-recent.timer").read_text()
    assert "--days %i" in (DEPLOY / "systemd" / "hailong-federation@.service").read_text()


def test_example_configs_load(tmp_path: Path) -> None:
    cfg = load_federation(DEPLOY / "federation.example.toml")
    assert cfg.province == "quang-ninh" and cfg.mqtt.username == "svc.federation"
    nat = load_national(DEPLOY / "national.example.toml")
    assert nat.mqtt.username == "svc.national" and nat.influx.database == "hailong_national"
    assert str(nat.centres).endswith("centres.json")
