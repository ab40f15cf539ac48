"""A judged stack for the ticket-rule tests: a real ingest on the session's Mosquitto and InfluxDB, a fleet
with officers and names, and helpers that publish QMS closes and ratings and wait for each rating's outcome."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from broker.contract import QmsEvent, new_event_id, qms_topic, rating_topic
from broker.mqtt.settings import MqttSettings
from device.publisher import RatingPublisher
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.waiting import wait_until

Msg = tuple[str, bytes]
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def local_ms(days_ago: int, hh: int, mm: int = 0, ss: int = 0) -> int:
    """Epoch ms of a wall-clock time in Ho Chi Minh City, ``days_ago`` local days before today."""
    day = datetime.now(HCM).date() - timedelta(days=days_ago)
    return int(datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=HCM).timestamp() * 1000)


def mqtt_settings(mosquitto: Any) -> MqttSettings:
    return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{mosquitto.port}",
                                        "username": mosquitto.username, "password": mosquitto.password})


@dataclass
class Judged:
    """One database, one publisher, one or more ingests; ``centre`` is the QMS centre of the tests."""

    uid: str
    db: InfluxQL
    pub: RatingPublisher
    services: list[IngestService] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def send(self, msgs: list[Msg]) -> None:
        infos = [self.pub.publish_raw(t, p) for t, p in msgs]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()

    def close(self, centre: str, counter: str, number: str, at: int, officer: str = "cb1",
              service: str | None = "ho-tich", ticket_id: str | None = None) -> Msg:
        ev = QmsEvent(v=1, type="ticket_closed", counter=counter, officer=officer, ticket=number, service=service,
                      ticket_id=ticket_id, at=at)
        return qms_topic(centre, counter), ev.to_json()

    def rating(self, centre: str, device: str, counter: str, number: str | None, *, rated: int,
               closed: int | None = None, officer: str = "cb1", event_id: str | None = None,
               sent: int | None = None, **changes: Any) -> tuple[Msg, str]:
        eid = event_id or new_event_id()
        data: dict[str, Any] = {
            "v": 1, "event_id": eid, "seq": next(self.seq), "device": device, "centre": centre,
            "counter": counter, "officer": officer, "ticket": number, "service": "ho-tich", "dossier": None,
            "scale": 4, "score": 4, "reasons": [], "input": "touch",
            "closed_at": (closed if closed is not None else rated - 3000) if number else None,
            "rated_at": rated, "sent_at": sent if sent is not None else max(rated, _now()),
            "boot_id": "judge-boot", "mono_ms": 5000,
        } | changes
        return (rating_topic(centre, device), json.dumps(data).encode()), eid

    # ------------------------------------------------------------------ reading back

    def ratings(self, where: str = "") -> list[dict[str, Any]]:
        return self.db.rows(f'SELECT * FROM "rating" {where}')

    def outcome(self, eid: str) -> str | None:
        """"rating" when stored, else the reason of a rejection whose payload carries ``eid``."""
        if self.db.rows(f'SELECT "score" FROM "rating" WHERE "event_id" = \'{eid}\''):
            return "rating"
        rows = self.db.rows(f'SELECT "payload", "reason" FROM "rejected" WHERE "payload" =~ /{eid}/')
        return str(rows[0]["reason"]) if rows else None

    def outcomes(self, eids: list[str], timeout: float = 20) -> dict[str, str]:
        def all_judged() -> dict[str, str] | None:
            got = {e: self.outcome(e) for e in eids}
            return {e: o for e, o in got.items() if o} if all(got.values()) else None

        result = wait_until(all_judged, timeout=timeout, what=f"outcomes of {len(eids)} ratings")
        assert result is not None
        return result

    def escalations(self, eid: str) -> list[dict[str, Any]]:
        return self.db.rows(f'SELECT * FROM "escalation" WHERE "event_id" = \'{eid}\'', epoch="ns")


def new_uid() -> str:
    return uuid.uuid4().hex[:6]


def _now() -> int:
    import time

    return time.time_ns() // 1_000_000


@contextlib.contextmanager
def judging(mosquitto: Any, influx_server: Any, name: str, uid: str, fleet: Any, **ingest: Any) -> Iterator[Judged]:
    """A fresh database, the real ingest on ``fleet`` and a publisher: what the judging tests share."""
    from tests.support.ingest import start_ingest

    mqtt = mqtt_settings(mosquitto)
    db = InfluxQL(influx_server.url, f"t_{name}_{uid}")
    db.create_database()
    svc = start_ingest(mqtt, db, uid, fleet=fleet, **ingest)
    pub = RatingPublisher(mqtt, f"pub-{uid}")
    assert pub.start()
    j = Judged(uid, db, pub, [svc])
    try:
        yield j
    finally:
        pub.stop()
        for s in j.services:
            s.stop()
        db.drop_database()
