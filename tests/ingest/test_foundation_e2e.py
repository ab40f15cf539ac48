"""The thinnest real path: simulated devices -> Mosquitto -> ingest -> InfluxDB 1.6.7."""

from __future__ import annotations

import pytest

from broker.mqtt import MqttSettings
from device.sim import plan_counters, run_counters
from ingest.influxql import InfluxQL
from tests.support.ingest import start_ingest
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
