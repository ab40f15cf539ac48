"""The thinnest real path: simulated devices -> Mosquitto -> ingest -> InfluxDB 1.6.7."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from broker.contract import RatingEvent, new_event_id, parse_rating, rating_topic
from broker.mqtt.settings import MqttSettings
from device.sim import plan_counters, run_counters
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL
from tests.support.golden import invalid_payloads, valid_payloads
from tests.support.ingest import publish_all, start_ingest
from tests.support.v2proxy import V2Proxy
from tests.support.waiting import wait_until


def _count(db: InfluxQL) -> int:
    return int(db.scalar('SELECT count("event_id") FROM "rating"') or 0)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_ten_devices_hundred_ratings_each(mqtt_settings: MqttSettings, influx_db: InfluxQL, v2proxy: V2Proxy,
                                          uid: str, api: str) -> None:
    url = v2proxy.url if api == "v2" else None
    svc = start_ingest(mqtt_settings, influx_db, uid, api=api, influx_url=url)
    try:
        counters = plan_counters([f"c{uid}"], 10)
        sent = run_counters(mqtt_settings, counters, 100, seed=1)
        assert len(sent) == 1000
        wait_until(lambda: _count(influx_db) >= 1000, timeout=60, what="1000 rating points")
    finally:
        svc.stop()
    rows = influx_db.rows('SELECT * FROM "rating"', epoch="ns")
    assert len(rows) == 1000
    by_id = {r["event_id"]: r for r in rows}
    assert set(by_id) == {e.event_id for e in sent}
    for e in sent[:50]:
        r = by_id[e.event_id]
        assert r["time"] == e.rated_at * 1_000_000 + e.seq % 1_000_000
        assert (r["centre"], r["device"], r["counter"], r["officer"], r["service"]) == (
            e.centre, e.device, e.counter, e.officer, e.service)
        assert r["province"] == "test-province"
        assert r["class"] == e.satisfaction.value
        assert r["walkup"] == "false"
        assert (r["score"], r["scale"], r["ticket"], r["input"]) == (e.score, e.scale, e.ticket, "touch")
        assert r["reasons"] == ",".join(e.reasons)
        assert r["response_ms"] == e.rated_at - (e.closed_at or 0)
        assert r["clock_corrected"] is False


def _rating(uid: str, seq: int, **changes: object) -> RatingEvent:
    base = parse_rating(valid_payloads("rating")["rating__top_score_touch"])
    data = base.model_dump() | {"centre": f"c{uid}", "device": f"d{uid}", "seq": seq,
                                "event_id": new_event_id()} | changes
    return RatingEvent.model_validate_json(json.dumps(data))


def test_same_event_twice_is_one_point(mqtt_settings: MqttSettings, influx_db: InfluxQL, uid: str) -> None:
    svc = start_ingest(mqtt_settings, influx_db, uid)
    try:
        event = _rating(uid, 7)
        topic = rating_topic(event.centre, event.device)
        publish_all(mqtt_settings, f"raw-{uid}", [(topic, event.to_json())])
        wait_until(lambda: svc.stats.acked >= 1, what="first copy acked")
        # a redelivery (device retry after a lost PUBACK) with a new sent_at
        resent = RatingEvent.model_validate(event.model_dump() | {"sent_at": event.sent_at + 5000})
        publish_all(mqtt_settings, f"raw-{uid}", [(topic, resent.to_json()), (topic, event.to_json())])
        wait_until(lambda: svc.stats.acked >= 3, what="both copies acked")
    finally:
        svc.stop()
    rows = influx_db.rows('SELECT * FROM "rating"')
    assert len(rows) == 1
    assert rows[0]["event_id"] == event.event_id


def test_invalid_golden_payloads_become_rejected_points_and_ingest_continues(
        mqtt_settings: MqttSettings, influx_db: InfluxQL, uid: str) -> None:
    cases = invalid_payloads("rating")
    topic = rating_topic(f"c{uid}", f"d{uid}")
    svc = start_ingest(mqtt_settings, influx_db, uid)
    try:
        before = _rating(uid, 1)
        after = _rating(uid, 2)
        publish_all(mqtt_settings, f"raw-{uid}", [(topic, before.to_json())] + [(topic, case.payload) for case in cases]
                 + [(topic, after.to_json())])
        wait_until(lambda: svc.stats.acked >= len(cases) + 2, timeout=30, what="all messages acked")
    finally:
        svc.stop()
    rejected = influx_db.rows('SELECT "reason", "payload", "detail", "centre", "topic" FROM "rejected"')
    assert len(rejected) == len(cases)
    assert sorted(r["reason"] for r in rejected) == sorted(case.reason for case in cases)
    assert all(r["topic"] == topic and r["centre"] == f"c{uid}" for r in rejected)
    for case in cases:
        if case.field:
            assert any(case.field in r["detail"] for r in rejected if r["reason"] == case.reason), case.name
    stored = {r["event_id"] for r in influx_db.rows('SELECT "event_id" FROM "rating"')}
    assert stored == {before.event_id, after.event_id}


def test_topic_device_differs_from_payload_device(mqtt_settings: MqttSettings, influx_db: InfluxQL,
                                                  uid: str) -> None:
    svc = start_ingest(mqtt_settings, influx_db, uid)
    try:
        event = _rating(uid, 3)
        publish_all(mqtt_settings, f"raw-{uid}", [(rating_topic(event.centre, f"x{uid}"), event.to_json())])
        wait_until(lambda: svc.stats.acked >= 1, what="mismatched rating acked")
    finally:
        svc.stop()
    rows = influx_db.rows('SELECT "reason", "device", "detail" FROM "rejected"')
    assert [(r["reason"], r["device"]) for r in rows] == [("topic_mismatch", f"x{uid}")]
    assert "device" in rows[0]["detail"]
    assert influx_db.rows('SELECT * FROM "rating"') == []


def test_influxdb_down_for_10s_loses_nothing(mqtt_settings: MqttSettings, tmp_path: Path, uid: str) -> None:
    """Ratings keep flowing while InfluxDB is stopped: nothing is acked until it is back, nothing lost."""
    own = InfluxServer(tmp_path / "influx").start()
    db = InfluxQL(own.url, "hailong")
    db.create_database()
    svc = start_ingest(mqtt_settings, db, uid)
    counters = plan_counters([f"c{uid}"], 5)
    try:
        first = run_counters(mqtt_settings, counters, 20, seed=3)
        wait_until(lambda: int(db.scalar('SELECT count("event_id") FROM "rating"') or 0) == 100,
                   what="ratings before the outage")
        own.stop()
        t0 = time.monotonic()
        during = run_counters(mqtt_settings, counters, 40, interval_s=0.1, seed=4)
        acked_during = svc.stats.acked
        remaining = 10 - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        assert svc.stats.acked == acked_during, "nothing may be acked while InfluxDB is down"
        assert svc.stats.write_failures > 0
        own.start()
        wait_until(lambda: int(db.scalar('SELECT count("event_id") FROM "rating"') or 0) >= 300, timeout=60,
                   what="all 300 ratings after recovery")
        ids = [r["event_id"] for r in db.rows('SELECT "event_id" FROM "rating"')]
    finally:
        svc.stop()
        own.stop()
    assert len(ids) == len(first) + len(during) == 300
    assert set(ids) == {e.event_id for e in first + during}
