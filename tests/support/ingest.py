"""Start the real ingest service in-process against the session's servers; build fleets and messages."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from broker.contract import QmsEvent, RatingEvent, new_event_id
from broker.mqtt.settings import MqttSettings
from ingest.config import IngestConfig
from ingest.registry import FleetRegistry, RegistryHolder
from ingest.service import IngestService
from storage.influxql import InfluxQL


def ingest_config(mqtt: MqttSettings, db: InfluxQL, uid: str, *, api: str = "v1",
                  influx_url: str | None = None, **extra: Any) -> IngestConfig:
    data: dict[str, Any] = {
        "mqtt": mqtt.model_dump(mode="json") | {"password": mqtt.secret()},
        "influx": {"url": influx_url or db.url, "api": api, "database": db.database},
        "client_id": f"hl-ingest-{uid}",
        "share_group": f"g{uid}",
        "province": "test-province",
        # one process unless a test asks for workers (tests/ingest/test_workers.py)
        "workers": 1,
        "batch": {"size": 200, "max_delay_ms": 50, "max_in_flight": 1000, "retry_initial_ms": 100,
                  "retry_max_ms": 1000},
        # the golden payloads carry fixed 2025 timestamps: do not reject them as too old
        "clock": {"max_age_s": 20 * 365 * 86_400},
        # persistent, but short-lived: a stopped test ingest must not collect the whole session's traffic
        "session_expiry_s": 300,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = data[key] | value
        else:
            data[key] = value
    return IngestConfig.model_validate(data)


def start_ingest(mqtt: MqttSettings, db: InfluxQL, uid: str, *, fleet: FleetRegistry | None = None,
                 **kw: Any) -> IngestService:
    cfg = ingest_config(mqtt, db, uid, **kw)
    holder = RegistryHolder(fleet, cfg.province) if fleet is not None else None
    svc = IngestService(cfg, registry=holder).start()
    # subscribed, not only connected: a message published before the broker read our SUBSCRIBE never reaches
    # this (new) session, and the test that published it would wait for its outcome in vain
    assert svc.wait_ready(30), "ingest did not connect to and subscribe on the test broker"
    return svc


# --------------------------------------------------------------------------- a fleet built in Python

@dataclass(frozen=True)
class TCentre:
    id: str
    province: str = "thua-thien-hue"
    has_qms: bool = True
    walkup_allowed: bool = False
    name: str = "Trung tâm Phục vụ hành chính công"
    timezone: str = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class TCounter:
    id: str
    label: str
    officer: str | None = None


@dataclass(frozen=True)
class TOfficer:
    id: str
    name: str
    centre: str
    retired: bool = False


@dataclass(frozen=True)
class TDevice:
    id: str
    centre: str
    counter: str
    retired: bool = False


@dataclass
class TFleet:
    """Satisfies ingest.registry.FleetRegistry (the fleet tool's Registry has the same shape)."""

    centres: dict[str, TCentre] = field(default_factory=dict)
    counters: dict[tuple[str, str], object] = field(default_factory=dict)
    devices: dict[str, TDevice] = field(default_factory=dict)
    officers: dict[str, TOfficer] = field(default_factory=dict)

    def add(self, centre: TCentre, *devices: TDevice) -> TFleet:
        self.centres[centre.id] = centre
        for d in devices:
            self.devices[d.id] = d
            self.counters[(d.centre, d.counter)] = TCounter(d.counter, f"Quầy {d.counter}")
        return self

    def officer(self, officer: str, name: str, centre: str) -> TFleet:
        self.officers[officer] = TOfficer(officer, name, centre)
        return self


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rating(centre: str, device: str, counter: str, officer: str, ticket: str | None, seq: int,
           **changes: Any) -> RatingEvent:
    """A valid rating rated 1 s after its ticket closed (override anything via ``changes``)."""
    now = now_ms()
    data: dict[str, Any] = {
        "v": 1, "event_id": new_event_id(), "seq": seq, "device": device, "centre": centre, "counter": counter,
        "officer": officer, "ticket": ticket, "service": "ho-tich", "dossier": None, "scale": 4, "score": 4,
        "reasons": [], "input": "touch", "closed_at": now - 1000 if ticket else None, "rated_at": now,
        "sent_at": now, "boot_id": "test-boot", "mono_ms": 5000,
    } | changes
    return RatingEvent.model_validate_json(json.dumps(data))


def ticket_closed(counter: str, officer: str, ticket: str, at: int | None = None) -> QmsEvent:
    return QmsEvent(v=1, type="ticket_closed", counter=counter, officer=officer, ticket=ticket, service="ho-tich",
                    at=at if at is not None else now_ms() - 1000)


def write_fleet(root: Any, centre: str, devices: list[tuple[str, str]], *, has_qms: bool = False,
                walkup_allowed: bool = False, province: str = "hue") -> Any:
    """A fleet directory in the fleet tool's format: one centre, ``devices`` = [(device, counter)]."""
    from pathlib import Path

    from broker.fleet.registry import Centre, Counter, Device
    from firmware_config.fleetedit import render_centres, render_devices, render_officers

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    c = Centre(id=centre, name="Trung tâm Phục vụ hành chính công", province=province, has_qms=has_qms,
               walkup_allowed=walkup_allowed)
    counters = [Counter(id=counter, centre=centre, label=f"Quầy {counter}") for _, counter in devices]
    (root / "centres.toml").write_text(render_centres([c], counters), encoding="utf-8")
    (root / "devices.toml").write_text(
        render_devices(Device(id=d, centre=centre, counter=counter) for d, counter in devices), encoding="utf-8")
    (root / "officers.toml").write_text(render_officers([]), encoding="utf-8")
    return root


def publish_all(mqtt: MqttSettings, client_id: str, msgs: list[tuple[str, bytes]], timeout: float = 60) -> None:
    """Publish at QoS 1 and return once the broker acknowledged every message."""
    from device.publisher import RatingPublisher

    pub = RatingPublisher(mqtt, client_id)
    assert pub.start(), "publisher could not connect"
    try:
        infos = [pub.publish_raw(t, p) for t, p in msgs]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge every message"
    finally:
        pub.stop()


class IngestProcess:
    """``hailong ingest run --config FILE`` as a real subprocess (for SIGKILL / SIGTERM tests).

    The MQTT password goes through the environment (HAILONG_INGEST__MQTT__PASSWORD), never the file.
    """

    def __init__(self, workdir: Any, cfg: IngestConfig, extra_toml: str = "") -> None:
        import os
        from pathlib import Path

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{cfg.client_id}.toml"
        m, i, b = cfg.mqtt, cfg.influx, cfg.batch
        text = f"""client_id = "{cfg.client_id}"
share_group = "{cfg.share_group}"
province = "{cfg.province}"
log_level = "INFO"
{f'registry = "{cfg.registry}"' if cfg.registry else ''}
registry_poll_s = {cfg.registry_poll_s}
workers = {cfg.workers if isinstance(cfg.workers, int) else '"auto"'}
{extra_toml}
[mqtt]
url = "{m.url}"
username = "{m.username}"
[influx]
url = "{i.url}"
api = "{i.api}"
database = "{i.database}"
[batch]
size = {b.size}
max_delay_ms = {b.max_delay_ms}
max_in_flight = {b.max_in_flight}
retry_initial_ms = {b.retry_initial_ms}
retry_max_ms = {b.retry_max_ms}
[integrity]
hold_grace_s = {cfg.integrity.hold_grace_s}
[health]
stats_interval_s = {cfg.health.stats_interval_s}
{'' if cfg.health.http_port is None else f'http_port = {cfg.health.http_port}'}
"""
        self.config_path.write_text(text, encoding="utf-8")
        self.env = dict(os.environ, HAILONG_INGEST__MQTT__PASSWORD=m.secret() or "")
        self.proc: Any = None
        self.log_path = self.workdir / f"{cfg.client_id}.log"

    def start(self) -> IngestProcess:
        import subprocess
        import sys

        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hailong.cli", "-v", "ingest", "run", "--config", str(self.config_path)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        return int(self.proc.wait(timeout))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
