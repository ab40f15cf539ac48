"""``hailong national consume`` against a real Mosquitto and InfluxDB 1.6.7.

Aggregates are published on national/<province>/<centre>/<day> as a province's bridge would
deliver them; the tests read what was stored back from InfluxDB.
"""

from __future__ import annotations

import datetime
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.federation import CentreDay, dump_centres, national_topic
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from national.config import NationalConfig
from national.service import NationalService
from storage.influxql import InfluxQL
from storage.schema import Measurement
from tests.support.waiting import wait_until

DAY = "2026-11-30"


def counts(rated: int, ns: int = 0, served: int | None = None) -> dict[str, int]:
    very = rated - ns
    return dict(rated=rated, not_satisfied=ns, satisfied=0, very_satisfied=very, walkups=0,
                served=rated if served is None else served)


class Running:
    def __init__(self, cfg: NationalConfig) -> None:
        self.service = NationalService(cfg).start()
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()
        assert self.service.consumer.wait_connected(10) and self.service.consumer.subscribed.wait(10)

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(20)
        self.service.close()


@pytest.fixture
def setup(tmp_path: Path, uid: str, mqtt_settings: MqttSettings,
          influx_db: InfluxQL) -> Iterator[tuple[NationalConfig, MqttSession, str]]:
    province = f"p{uid}"
    centres = {f"{province}-c1": province, f"{province}-c2": province, f"q{uid}-c1": f"q{uid}"}
    (tmp_path / "centres.json").write_text(dump_centres(centres), encoding="utf-8")
    cfg = NationalConfig.model_validate({
        "mqtt": mqtt_settings.model_dump(), "influx": {"url": influx_db.url, "database": influx_db.database,
                                                       "api": "v1"},
        "centres": tmp_path / "centres.json", "client_id": f"nat-{uid}", "session_expiry_s": 120,
        "batch": {"max_delay_ms": 20}, "health": {"http_port": 0, "stats_interval_s": 1}})
    pub = MqttSession(mqtt_settings, f"bridge-{uid}").start()
    assert pub.wait_connected(10)
    yield cfg, pub, province
    pub.stop()


def send(pub: MqttSession, msg: CentreDay, topic: str | None = None, raw: bytes | None = None) -> None:
    info = pub.publish(topic or national_topic(msg.province, msg.centre, msg.day), raw or msg.to_json(), qos=1)
    info.wait_for_publish(10)


def stored(db: InfluxQL) -> list[dict[str, Any]]:
    return db.rows(f'SELECT * FROM "{Measurement.AGG_CENTRE_DAY}" GROUP BY "province", "centre"')


def rejected(db: InfluxQL) -> list[dict[str, Any]]:
    return db.rows(f'SELECT * FROM "{Measurement.AGG_REJECTED}" GROUP BY "reason", "province"')


def test_revision_rule_end_to_end(setup: tuple[NationalConfig, MqttSession, str], influx_db: InfluxQL) -> None:
    cfg, pub, p = setup
    run = Running(cfg)
    try:
        c1 = f"{p}-c1"
        first = CentreDay.build(p, c1, DAY, 1000, **counts(10, 2))
        send(pub, first)
        wait_until(lambda: stored(influx_db))
        send(pub, first)  # duplicate: same revision, same counts
        send(pub, CentreDay.build(p, c1, DAY, 2000, **counts(12, 3)))  # higher: replaces
        send(pub, CentreDay.build(p, c1, DAY, 1500, **counts(99, 0)))  # late older copy: ignored
        send(pub, CentreDay.build(p, c1, DAY, 2000, **counts(13, 3)))  # same revision, other counts
        wait_until(lambda: rejected(influx_db))
        wait_until(lambda: run.service.stats.older == 1 and run.service.stats.duplicates == 1)
        rows = stored(influx_db)
        assert len(rows) == 1, rows  # one point per centre-day, whatever was re-sent
        row = rows[0]
        assert (row["rated"], row["not_satisfied"], row["revision"], row["province"], row["centre"]) == \
            (12, 3, 2000, p, c1)
        # stamped at the local midnight of the day (UTC+7)
        assert row["time"] == int(datetime.datetime(2026, 11, 29, 17, tzinfo=datetime.UTC).timestamp() * 1000)
        bad = rejected(influx_db)
        assert [(r["reason"], r["province"]) for r in bad] == [("revision_conflict", p)]
        assert "digest" in bad[0]["detail"] and json.loads(bad[0]["payload"])["rated"] == 13
        roster = influx_db.rows(f'SELECT * FROM "{Measurement.AGG_ROSTER}" GROUP BY "province"')
        assert {(r["province"], r["centres"]) for r in roster} == {(p, 2), (f"q{p[1:]}", 1)}
        received = influx_db.scalar(f'SELECT sum("n") FROM "{Measurement.AGG_RECEIVED}" WHERE "province" = \'{p}\'')
        assert received == 5  # every well-formed aggregate of p, stored or not (the silence alert counts them)
        with urllib.request.urlopen(f"http://127.0.0.1:{run.service.health.port}/healthz", timeout=5) as r:  # type: ignore[union-attr]
            body = json.loads(r.read())
        assert r.status == 200 and body["broker_connected"] and body["stored"] == 2
    finally:
        run.stop()


def test_refusals_are_stored_with_a_reason(setup: tuple[NationalConfig, MqttSession, str],
                                           influx_db: InfluxQL, uid: str) -> None:
    cfg, pub, p = setup
    run = Running(cfg)
    try:
        good = CentreDay.build(p, f"{p}-c1", DAY, 5, **counts(4, 1))
        # the centre of province q, reported by p (its own topic and payload say p)
        send(pub, CentreDay.build(p, f"q{uid}-c1", DAY, 5, **counts(4, 1)))
        send(pub, CentreDay.build(p, f"{p}-c9", DAY, 5, **counts(4, 1)))  # not in the national list
        forged = json.loads(good.to_json()) | {"rated": 40, "very_satisfied": 39}
        send(pub, good, raw=json.dumps(forged).encode())  # counts edited on the way
        send(pub, good, topic=national_topic(f"q{uid}", f"{p}-c1", DAY))  # under another province's topic
        send(pub, good, raw=b"{not json")
        send(pub, good, topic=f"national/{p}/{p}-c1/yesterday")
        send(pub, good)  # and one good one, stored
        want = {("wrong_province", p), ("unknown_centre", p), ("bad_digest", p), ("topic_mismatch", f"q{uid}"),
                ("malformed_json", p), ("bad_topic", p)}
        wait_until(lambda: len(rejected(influx_db)) >= len(want))
        assert {(r["reason"], r["province"]) for r in rejected(influx_db)} == want
        rows = wait_until(lambda: stored(influx_db))
        assert [(r["centre"], r["rated"]) for r in rows] == [(f"{p}-c1", 4)]
        assert sum(run.service.stats.refused.values()) == 6
    finally:
        run.stop()


def test_restart_keeps_the_session_and_the_revisions(setup: tuple[NationalConfig, MqttSession, str],
                                                     influx_db: InfluxQL) -> None:
    cfg, pub, p = setup
    c2 = f"{p}-c2"
    run = Running(cfg)
    send(pub, CentreDay.build(p, c2, DAY, 10, **counts(5)))
    wait_until(lambda: stored(influx_db))
    run.stop()
    # while the consumer is down, the broker queues for its persistent session
    later = [CentreDay.build(p, c2, f"2026-11-{d:02d}", 20, **counts(d)) for d in range(1, 29)]
    for msg in later:
        send(pub, msg)
    send(pub, CentreDay.build(p, c2, DAY, 10, **counts(5)))  # a duplicate of what is stored
    send(pub, CentreDay.build(p, c2, DAY, 10, **counts(6)))  # and a conflict with it
    run = Running(cfg)
    try:
        assert len(run.service.index) == 1  # loaded from InfluxDB at start
        wait_until(lambda: len(stored(influx_db)) == 29)
        wait_until(lambda: rejected(influx_db))
        assert run.service.stats.duplicates == 1
        assert {r["rated"] for r in stored(influx_db)} == {*range(1, 29), 5}
        assert [r["reason"] for r in rejected(influx_db)] == ["revision_conflict"]
    finally:
        run.stop()
