"""Vendor rows in real PostgreSQL and MariaDB -> `hailong qms bridge` -> real Mosquitto -> QMS topics.

Daily-reset numbers (A001 yesterday and today), a recall (the same ticket called and
closed again), an officer moving counters, rows sharing one updated_at across batch
boundaries. Every expected event arrives once, with the vendor's ticket id, and a
second bridge reading the same database from scratch derives the very same event ids.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from broker.mqtt.settings import MqttSettings
from tests.support.sqlservers import SqlServer
from tests.support.waiting import wait_until

from .conftest import DEPLOY, BridgeProcess, QmsListener, _healthz, bridge_config, bridge_env, load_schema
from .vendor import VendorDb, as_expected, ms

CENTRE = "ttphcc-ha-noi"


def check_exactly_once(listener: QmsListener, vendor: VendorDb, wire_dupes_allowed: bool) -> dict[str, Any]:
    """Every expected event arrived, none other, one id per event and one event per id."""
    got = listener.events()
    by_id: dict[str, set[Any]] = {}
    for topic, doc in got:
        assert topic == f"hl/v1/{CENTRE}/qms/{doc['counter']}"
        by_id.setdefault(doc["event_id"], set()).add(as_expected(doc))
    assert all(len(v) == 1 for v in by_id.values()), "one event id must always name the same event"
    events = Counter(next(iter(v)) for v in by_id.values())
    assert [e for e, n in events.items() if n > 1] == [], "an event published under two ids"
    assert set(events) == set(vendor.expected)
    assert len(events) == len(vendor.expected)
    if not wire_dupes_allowed:
        assert len(got) == len(by_id), "no fault: not even a QoS 1 redelivery expected"
    return {d["event_id"]: as_expected(d) for _, d in got}


def run_scenario(vendor: VendorDb, listener: QmsListener) -> None:
    today = vendor.now().replace(hour=0, minute=0, second=0, microsecond=0)
    yday = today - dt.timedelta(days=1)
    t = lambda day, h, m, s=0: ms(day.replace(hour=h, minute=m, second=s))  # noqa: E731
    # yesterday, written late and at once: four rows share one updated_at (batch size 2 splits them)
    same = vendor.now()
    s1 = vendor.login("NV01", "Q1", t(yday, 7, 58), changed=same)
    a1 = vendor.issue("A001", "HT", t(yday, 8, 0), changed=same)
    a2 = vendor.issue("A002", "DD", t(yday, 8, 1), changed=same)
    a9 = vendor.issue("A009", "HT", t(yday, 8, 2), changed=same)  # never called: no event
    vendor.serve(a1, "A001", "HT", "Q1", "NV01", t(yday, 8, 5), t(yday, 8, 10), changed=same)
    vendor.serve(a2, "A002", "DD", "Q1", "NV01", t(yday, 8, 12), t(yday, 8, 20), changed=same)
    vendor.logout(s1, "NV01", "Q1", t(yday, 11, 30))
    assert a9
    # today: numbering restarted at A001
    s2 = vendor.login("NV01", "Q1", t(today, 7, 55))
    s3 = vendor.login("NV02", "Q2", t(today, 7, 56))
    b1 = vendor.issue("A001", "HT", t(today, 8, 0))
    vendor.serve(b1, "A001", "HT", "Q1", "NV01", t(today, 8, 3), t(today, 8, 9))
    # NV01 moves from Q1 to Q2; NV02 from Q2 to Q1
    vendor.logout(s2, "NV01", "Q1", t(today, 9, 0))
    vendor.logout(s3, "NV02", "Q2", t(today, 9, 1))
    vendor.login("NV02", "Q1", t(today, 9, 2))
    vendor.login("NV01", "Q2", t(today, 9, 5))
    b2 = vendor.issue("A002", "DD", t(today, 8, 30))
    vendor.serve(b2, "A002", "DD", "Q2", "NV01", t(today, 9, 6), t(today, 9, 12))
    b3 = vendor.issue("A003", "HT", t(today, 8, 40))
    vendor.serve(b3, "A003", "HT", "Q1", "NV02", t(today, 9, 10), t(today, 9, 14))
    wait_until(lambda: any(d.get("ticket_id") == str(b3) for _, d in listener.events()), 20,
               what="the first close of A003")
    # recall: the citizen comes back, A003 is called and closed again (same row, same vendor id)
    vendor.serve(b3, "A003", "HT", "Q1", "NV02", t(today, 9, 20), t(today, 9, 25))


@pytest.mark.parametrize("db", ["postgres", "mariadb"])
def test_vendor_rows_reach_the_qms_topics_once_with_the_vendor_ticket_id(
        db: str, request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path, uid: str) -> None:
    server: SqlServer = request.getfixturevalue(db)
    schema = "vendor-schema-postgresql.sql" if db == "postgres" else "vendor-schema-mariadb.sql"
    mapping = "qms-postgresql.toml" if db == "postgres" else "qms-mariadb.toml"
    load_schema(server, DEPLOY / schema)
    listener = QmsListener(mqtt_settings, CENTRE, f"qms-listen-{uid}").start()
    vendor = VendorDb(server.url("qms_writer"))
    config = bridge_config(DEPLOY / mapping, tmp_path, mqtt_settings)
    env = bridge_env(tmp_path, HAILONG_QMS__SQL__URL=server.url("qms_ro", with_password=False),
                     HAILONG_QMS__SQL__PASSWORD=server.ro_password, HAILONG_QMS__SQL__POLL_INTERVAL_S="0.2",
                     HAILONG_QMS__SQL__BATCH_SIZE="2")
    request.node.bridge_log = tmp_path / "bridge.log"
    bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
    try:
        run_scenario(vendor, listener)
        wait_until(lambda: len({d["event_id"] for _, d in listener.events()}) >= len(vendor.expected), 30,
                   what=f"{len(vendor.expected)} events")
        ids = check_exactly_once(listener, vendor, wire_dupes_allowed=False)
        closes = [e for e in ids.values() if e[0] == "ticket_closed" and e[3] == "A001"]
        assert len({e[4] for e in closes}) == 2, "A001 of yesterday and of today are two tickets"
        recalls = [e for e in ids.values() if e[0] == "ticket_closed" and e[3] == "A003"]
        assert len(recalls) == 2 and len({e[4] for e in recalls}) == 1, "a recall keeps the vendor ticket id"
        # the listener may get an event before the bridge gets its PUBACK: wait for the outbox to drain
        port = int(env["HAILONG_QMS__HTTP__PORT"])
        wait_until(lambda: (_healthz(port) or {}).get("outbox_depth") == 0, 10, what="the bridge's outbox drained")
        health = _healthz(port)
        assert health is not None and health["state"] == "ok" and health["outbox_depth"] == 0
        assert set(health["counters"]) == {"q01", "q02"}
        wait_until(lambda: listener.statuses and listener.statuses[-1]["online"], 10, what="retained status")
        assert listener.statuses[-1]["device"] == "qms-bridge"
    finally:
        bridge.stop()
    # a restart reads nothing twice (durable watermark); a bridge with a fresh outbox re-reads every row
    # and derives the same ids: the receivers' de-duplication sees one event per vendor event
    assert listener.statuses[-1]["online"] is False or wait_until(
        lambda: listener.statuses[-1]["online"] is False, 5, what="offline status")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    before = len(listener.events())
    env2 = {**env, "HAILONG_QMS__OUTBOX": str(fresh / "outbox.sqlite3")}
    again = BridgeProcess(config, env2, tmp_path / "bridge.log").start()
    try:
        # the row of A003 now holds only its recall: its first call/close cannot be re-read
        overwritten = {i for i, e in ids.items() if e[3] == "A003" and e[6] == min(
            x[6] for x in ids.values() if x[3] == "A003" and x[0] == e[0])}
        assert len(overwritten) == 2
        wait_until(lambda: len(listener.events()) >= 2 * before - 2, 30, what="the re-read events")
        time.sleep(1)  # and nothing more
        reread = {d["event_id"]: as_expected(d) for _, d in listener.events()[before:]}
        assert reread == {i: e for i, e in ids.items() if i not in overwritten}
    finally:
        again.stop()
        listener.stop()
        vendor.dispose()
