"""Start the real ingest service in-process against the session's servers; build fleets and messages."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from broker.contract import QmsEvent, RatingEvent, new_event_id
from broker.mqtt import MqttSettings
from ingest.config import IngestConfig
from ingest.influxql import InfluxQL
from ingest.registry import FleetRegistry, RegistryHolder
from ingest.service import IngestService


def ingest_config(mqtt: MqttSettings, db: InfluxQL, uid: str, *, api: str = "v1",
                  influx_url: str | None = None, **extra: Any) -> IngestConfig:
    data: dict[str, Any] = {
        "mqtt": mqtt.model_dump(mode="json") | {"password": mqtt.secret()},
        "influx": {"url": influx_url or db.url, "api": api, "database": db.database},
        "client_id": f"hl-ingest-{uid}",
        "share_group": f"g{uid}",
        "province": "test-province",
        "batch": {"size": 200, "max_delay_ms": 50, "max_in_flight": 1000, "retry_initial_ms": 100,
                  "retry_max_ms": 1000},
        # the golden payloads carry fixed 2025 timestamps: do not reject them as too old
        "clock": {"max_age_s": 20 * 365 * 86_400},
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
    assert svc.connected, "ingest did not connect to the test broker"
    return svc


# --------------------------------------------------------------------------- a fleet built in Python

@dataclass(frozen=True)
class TCentre:
    id: str
    province: str = "thua-thien-hue"
    has_qms: bool = True
    walkup_allowed: bool = False


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

    def add(self, centre: TCentre, *devices: TDevice) -> TFleet:
        self.centres[centre.id] = centre
        for d in devices:
            self.devices[d.id] = d
            self.counters[(d.centre, d.counter)] = d.counter
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
