"""Real federations on loopback: province brokers bridged (TLS, certificates) to a national broker.

Every broker is a Mosquitto started from the files ``hailong broker render`` and ``hailong
national render`` produce; nothing is configured by hand here but ports and directories.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from broker.mosquitto.national import render_national
from broker.mosquitto.render import load_options, render_broker
from broker.mqtt.settings import MqttSettings
from federation.config import FederationConfig
from hailong.localstack import InfluxServer, MosquittoServer, free_port
from national.config import NationalConfig
from national.service import NationalService
from storage.influxql import InfluxQL

from .support import write_fleet

FAST_RECONNECT = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "reconnect_spread_s": 0.2}


def _root() -> list[str]:
    return ['run_as = "root"'] if os.geteuid() == 0 else []


@dataclass
class National:
    root: Path
    provinces: dict[str, list[str]]
    influx: InfluxServer
    broker: MosquittoServer = field(init=False)
    tls_port: int = field(default_factory=free_port)
    local_port: int = field(default_factory=free_port)
    db: InfluxQL = field(init=False)
    service: NationalService | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        d = self.root / "ministry"
        d.mkdir(parents=True)
        lines = []
        for pid, centres in self.provinces.items():
            lines += [f"[province.{pid}]", f'name = "Tỉnh {pid}"', f"centres = {json.dumps(centres)}", ""]
        (d / "provinces.toml").write_text("\n".join(lines), encoding="utf-8")
        work = self.root / "national-broker"
        (d / "national-broker.toml").write_text("\n".join([
            'hostnames = ["localhost"]', 'bind = "127.0.0.1"', f"tls_port = {self.tls_port}",
            f"local_port = {self.local_port}", f'conf_dir = "{self.root / "national-out"}"',
            f'data_dir = "{work / "data"}"', *_root()]) + "\n", encoding="utf-8")
        render_national(d, self.root / "national-out")
        self.dir = d
        self.out = self.root / "national-out"
        conf = (self.out / "mosquitto.conf").read_text()
        self.broker = MosquittoServer(work, port=self.local_port, conf_text=conf)
        self.db = InfluxQL(self.influx.url, f"nat_{uuid.uuid4().hex[:10]}")
        self.db.create_database()

    def bundle(self, province: str) -> Path:
        return self.out / "provinces" / province

    def mqtt(self) -> MqttSettings:
        pw = (self.dir / "state" / "secrets" / "svc.national.password").read_text().strip()
        return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{self.local_port}", "username": "svc.national",
                                            "password": pw, **FAST_RECONNECT})

    def consumer_config(self) -> NationalConfig:
        return NationalConfig.model_validate({
            "mqtt": self.mqtt().model_dump(), "centres": self.out / "centres.json", "client_id": "svc.national",
            "influx": {"url": self.db.url, "database": self.db.database, "api": "v1"},
            "batch": {"max_delay_ms": 50}, "health": {"stats_interval_s": 5}})

    def start_consumer(self) -> NationalService:
        self.service = NationalService(self.consumer_config()).start()
        self._thread = threading.Thread(target=self.service.run, daemon=True)
        self._thread.start()
        # subscribed, not only connected: what a bridge forwards before the SUBACK may never reach a new session
        assert self.service.consumer.wait_connected(15) and self.service.consumer.subscribed.wait(15)
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            if self._thread is not None:
                self._thread.join(20)
            self.service.close()
        self.broker.stop()
        self.db.drop_database()


@dataclass
class Province:
    root: Path
    pid: str
    centres: list[str]
    national: National
    influx: InfluxServer
    terminals: bool = False  # one registered terminal per centre (d-<centre>), with its broker password
    tls_port: int = field(default_factory=free_port)
    cert_port: int = field(default_factory=free_port)
    local_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.fleet = write_fleet(self.root / f"fleet-{self.pid}", dict.fromkeys(self.centres, self.pid),
                                 devices=self.terminals)
        self.work = self.root / f"broker-{self.pid}"
        self.out = self.root / f"out-{self.pid}"
        (self.fleet / "broker.toml").write_text("\n".join([
            'hostnames = ["localhost"]', 'bind = "127.0.0.1"', f"tls_port = {self.tls_port}",
            f"cert_port = {self.cert_port}", f"local_port = {self.local_port}", f'conf_dir = "{self.out}"',
            f'data_dir = "{self.work / "data"}"', *_root(), "", "[federation]", f'province = "{self.pid}"',
            'national_host = "localhost"', f"national_port = {self.national.tls_port}",
            f'bundle = "{self.national.bundle(self.pid)}"', "restart_timeout_s = [1, 2]", "autosave_interval_s = 1",
        ]) + "\n", encoding="utf-8")
        self.state = FleetState.for_fleet(self.fleet)
        if self.terminals:
            self.state.passwords([f"d-{c}" for c in self.centres])  # what provisioning gives each terminal
        render_broker(load_registry(self.fleet), self.state, self.out, load_options(self.fleet, self.state))
        self.broker = MosquittoServer(self.work, port=self.local_port,
                                      conf_text=(self.out / "mosquitto.conf").read_text())
        self.db = InfluxQL(self.influx.url, f"prov_{self.pid}_{uuid.uuid4().hex[:6]}".replace("-", "_"))
        self.db.create_database()

    def mqtt_as(self, user: str) -> MqttSettings:
        """The broker's local listener as one of its users (a terminal, svc.ingest, svc.qms.<centre>)."""
        return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{self.local_port}", "username": user,
                                            "password": self.state.secret_path(user).read_text().strip(),
                                            **FAST_RECONNECT})

    def federation_config(self) -> FederationConfig:
        pw = self.state.secret_path("svc.federation").read_text().strip()
        return FederationConfig.model_validate({
            "province": self.pid, "registry": self.fleet,
            "mqtt": {"url": f"mqtt://127.0.0.1:{self.local_port}", "username": "svc.federation", "password": pw,
                     "protocol": "3.1.1", **FAST_RECONNECT},
            "influx": {"url": self.db.url, "database": self.db.database, "api": "v1"}, "ack_timeout_s": 30})

    def stop(self) -> None:
        self.broker.stop()
        self.db.drop_database()
