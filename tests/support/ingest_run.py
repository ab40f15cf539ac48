"""`hailong ingest run` as a real process against a rendered fleet broker (tests/broker/fleet_broker.py),
configured like a production ingest.toml: the worker tests' one way to start, watch and stop an ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hailong.localstack import free_port
from storage.influxql import InfluxQL

if TYPE_CHECKING:
    from tests.broker.fleet_broker import FleetBroker


class IngestRun:
    """One ingest instance (``user``: svc.ingest, svc.ingest.2, ...) with ``workers`` worker processes.

    Worker 0's password comes through the environment, as the systemd unit's credential does; every
    other worker reads its own file from ``secrets`` (worker_secrets_dir, the fleet's by default)."""

    def __init__(self, tmp: Path, fb: FleetBroker, db: InfluxQL, *, user: str = "svc.ingest", workers: int = 2,
                 partition: tuple[int, int] = (0, 1), secrets: Path | None = None,
                 session_expiry_s: int = 600) -> None:
        self.fb, self.user, self.session_expiry_s = fb, user, session_expiry_s
        self.health_port = free_port()
        self.config = tmp / f"ingest-{user}.toml"
        self.secrets = secrets if secrets is not None else fb.state.root / "secrets"
        self.set_workers(workers, db, partition)
        self.env = dict(os.environ, HAILONG_INGEST__MQTT__PASSWORD=fb.password(user))
        self.log_path = tmp / f"ingest-{user}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def set_workers(self, workers: int, db: InfluxQL, partition: tuple[int, int] = (0, 1)) -> None:
        """(Re)write the config: takes effect at the next :meth:`start`."""
        fb = self.fb
        self.config.write_text(f"""
registry = "{fb.fleet}"
workers = {workers}
worker_secrets_dir = "{self.secrets}"
share_group = "hl-ingest"
session_expiry_s = {self.session_expiry_s}
[mqtt]
url = "mqtts://127.0.0.1:{fb.options.tls_port}"
username = "{self.user}"
ca_file = "{fb.out / 'ca.crt'}"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
reconnect_spread_s = 0.3
[influx]
url = "{db.url}"
api = "v1"
database = "{db.database}"
[batch]
size = 50
max_delay_ms = 50
max_in_flight = 200
[integrity]
partition = {{ index = {partition[0]}, count = {partition[1]} }}
[health]
http_port = {self.health_port}
stats_interval_s = 1
""", encoding="utf-8")

    def start(self) -> IngestRun:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", "-v", "ingest", "run", "--config",
                                      str(self.config)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return dict(json.loads(r.read()))
        except OSError as exc:  # 503 while a worker is not ready; connection refused before start
            body = getattr(exc, "read", None)
            return dict(json.loads(body())) if callable(body) else None

    def healthy(self) -> bool:
        h = self.health()
        return bool(h and h.get("alive"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """SIGTERM, as systemd stops it: every worker stops and the command exits 0."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(60) == 0, self.log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
