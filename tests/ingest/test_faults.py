"""Faults against real servers: SIGKILL mid-stream, a killed member of a $share group, InfluxDB
outage, a point InfluxDB refuses forever, restart with a rebuilt ticket index, SIGTERM flush.

Exactly-once is checked by event_id: every published rating is in InfluxDB, and the number of
points equals the number of distinct ratings (a redelivery rewrites its identical point).
"""

from __future__ import annotations

import json
import resource
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from broker.contract import qms_topic, rating_topic, status_topic
from broker.mqtt.settings import MqttSettings
from hailong.localstack import InfluxServer, MosquittoServer, free_port
from storage.influxql import InfluxQL
from tests.support.ingest import (
    IngestProcess,
    TCentre,
    TDevice,
    TFleet,
    ingest_config,
    publish_all,
    rating,
    start_ingest,
    ticket_closed,
    write_fleet,
)
from tests.support.waiting import wait_until

Msg = tuple[str, bytes]


def stream(uid: str, devices: int, per_device: int) -> tuple[list[Msg], set[str]]:
    """Ticket ratings from ``devices`` terminals of centre c{uid} (no QMS), interleaved."""
    msgs: list[Msg] = []
    ids: set[str] = set()
    for n in range(per_device):
        for d in range(devices):
            ev = rating(f"c{uid}", f"d{d}{uid}", f"q{d}", "cb1", f"A-{n}", n)
            msgs.append((rating_topic(ev.centre, ev.device), ev.to_json()))
            ids.add(ev.event_id)
    return msgs, ids


def fleet_dir(tmp_path: Path, uid: str, devices: int) -> Path:
    return write_fleet(tmp_path / "fleet", f"c{uid}", [(f"d{d}{uid}", f"q{d}") for d in range(devices)])


def publish_paced(mqtt: MqttSettings, uid: str, msgs: list[Msg], seconds: float) -> threading.Thread:
    """Publish ``msgs`` in 20 slices spread over ``seconds`` from a background thread."""
    def run() -> None:
        step = max(1, len(msgs) // 20)
        for i in range(0, len(msgs), step):
            publish_all(mqtt, f"pub-{uid}-{i}", msgs[i:i + step])
            time.sleep(seconds / 20)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def event_ids(db: InfluxQL) -> list[str]:
    return [r["event_id"] for r in db.rows('SELECT "event_id" FROM "rating"')]


def count(db: InfluxQL) -> int:
    return int(db.scalar('SELECT count("event_id") FROM "rating"') or 0)


def assert_exactly_once(db: InfluxQL, ids: set[str]) -> None:
    stored = event_ids(db)
    assert len(stored) == len(set(stored)) == len(ids)
    assert set(stored) == ids
    assert db.rows('SELECT * FROM "rejected"') == [], "a redelivery must never be rejected as a duplicate"


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_every_rating_once(mqtt_settings: MqttSettings, influx_db: InfluxQL,
                                                          tmp_path: Path, uid: str) -> None:
    msgs, ids = stream(uid, 10, 200)
    cfg = ingest_config(mqtt_settings, influx_db, uid, registry=fleet_dir(tmp_path, uid, 10),
                        batch={"size": 100, "max_in_flight": 300})
    proc = IngestProcess(tmp_path, cfg).start()
    try:
        wait_until(lambda: "connected to" in proc.log(), timeout=20, what="ingest subprocess connected")
        th = publish_paced(mqtt_settings, uid, msgs, 4.0)
        wait_until(lambda: count(influx_db) >= 400, timeout=20, what="some ratings written")
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = count(influx_db)
        th.join(60)
        assert killed_at < len(ids), "the kill must happen mid-stream"
        proc = IngestProcess(tmp_path, cfg).start()
        wait_until(lambda: count(influx_db) >= len(ids), timeout=60, what="all ratings after restart")
        time.sleep(0.5)  # let any straggling redelivery land before counting duplicates
        assert_exactly_once(influx_db, ids)
    finally:
        proc.stop()
    assert "ticket index rebuilt" in proc.log()


@pytest.mark.slow
def test_broker_restart_mid_stream_every_rating_once(influx_db: InfluxQL, tmp_path: Path, uid: str) -> None:
    """The ingest's own MQTT consumer: the broker restarts (persistence on) while ratings are being
    judged and written. The consumer notices, reconnects with backoff, resumes its persistent
    session; what was un-acked on the dead connection is redelivered and rewrites its own point."""
    broker = MosquittoServer(tmp_path / "mosquitto").start()
    mqtt = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                                        "password": broker.password})
    msgs, ids = stream(uid, 10, 200)
    half = len(msgs) // 2
    cfg = ingest_config(mqtt, influx_db, uid, registry=fleet_dir(tmp_path, uid, 10),
                        batch={"size": 100, "max_in_flight": 300})
    proc = IngestProcess(tmp_path, cfg).start()
    try:
        wait_until(lambda: "connected to" in proc.log(), timeout=20, what="ingest subprocess connected")
        publish_all(mqtt, f"pub-{uid}-1", msgs[:half])
        wait_until(lambda: count(influx_db) >= 100, timeout=20, what="the first ratings written")
        broker.restart()  # SIGTERM: Mosquitto saves the sessions; same port
        restarted_at = count(influx_db)
        publish_all(mqtt, f"pub-{uid}-2", msgs[half:])
        wait_until(lambda: count(influx_db) >= len(ids), timeout=60, what="every rating after the restart")
        time.sleep(0.5)  # a straggling redelivery lands before duplicates are counted
        assert restarted_at < len(ids), "the restart must happen mid-stream"
        assert_exactly_once(influx_db, ids)
        log = proc.log()
        assert "disconnected from broker" in log and log.count("connected to") >= 2, log[-2000:]
    finally:
        proc.stop()
        broker.stop()


@pytest.mark.slow
def test_two_instances_one_killed_halfway(mqtt_settings: MqttSettings, influx_db: InfluxQL,
                                          tmp_path: Path, uid: str) -> None:
    """Mosquitto 2.0 keeps the killed member's in-flight and queued share messages in ITS session until
    that session reconnects (it does not hand them to the surviving member). Restarting the killed
    instance with the same client id (systemd Restart=always) delivers them: exactly once overall."""
    msgs, ids = stream(uid, 10, 150)
    fleet = fleet_dir(tmp_path, uid, 10)
    # two instances of one partition split its ratings only through $share (ratings_shared)
    a = ingest_config(mqtt_settings, influx_db, f"a{uid}", registry=fleet, share_group=f"g{uid}",
                      ratings_shared=True, batch={"size": 50, "max_in_flight": 100})
    b = ingest_config(mqtt_settings, influx_db, f"b{uid}", registry=fleet, share_group=f"g{uid}",
                      ratings_shared=True, batch={"size": 50, "max_in_flight": 100})
    pa, pb = IngestProcess(tmp_path, a).start(), IngestProcess(tmp_path, b).start()
    try:
        for p in (pa, pb):
            wait_until(lambda p=p: "connected to" in p.log(), timeout=20, what="both instances connected")
        th = publish_paced(mqtt_settings, uid, msgs, 4.0)
        wait_until(lambda: count(influx_db) >= len(ids) // 3, timeout=30, what="a third written")
        pa.signal(signal.SIGKILL)
        pa.wait(10)
        th.join(60)
        # B alone drains what the broker routes to it; A's share stays parked in A's session
        wait_until(lambda: (c := count(influx_db), time.sleep(1.0), c == count(influx_db))[2], timeout=60,
                   what="B to go idle")
        stranded = len(ids) - count(influx_db)
        print(f"\nshared subscription: {stranded} of {len(ids)} ratings waited for the killed member's session")
        pa = IngestProcess(tmp_path, a).start()
        wait_until(lambda: count(influx_db) >= len(ids), timeout=60, what="all ratings after A restarted")
        time.sleep(0.5)
        assert_exactly_once(influx_db, ids)
    finally:
        pa.stop()
        pb.stop()


@pytest.mark.slow
def test_influxdb_down_12s_bounded_memory_nothing_lost(mqtt_settings: MqttSettings, tmp_path: Path,
                                                      uid: str) -> None:
    """12 s (not the issue's 30 s) keeps the suite inside its time budget; what is exercised is the same:
    several failed retries at the capped backoff, the broker holding everything beyond the in-flight window."""
    own = InfluxServer(tmp_path / "influx").start()
    db = InfluxQL(own.url, "hailong")
    db.create_database()
    max_in_flight = 150
    svc = start_ingest(mqtt_settings, db, uid, batch={"size": 50, "max_in_flight": max_in_flight,
                                                      "retry_max_ms": 1000})
    msgs, ids = stream(uid, 5, 160)
    try:
        publish_all(mqtt_settings, f"pub0-{uid}", msgs[:100])
        wait_until(lambda: count(db) == 100, what="ratings before the outage")
        own.stop()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        th = publish_paced(mqtt_settings, uid, msgs[100:], 8.0)
        peak = 0
        deadline = time.monotonic() + 12
        acked = svc.stats.acked
        while time.monotonic() < deadline:
            peak = max(peak, svc.stats.in_flight)
            time.sleep(0.05)
        th.join(30)
        assert svc.stats.acked == acked, "nothing may be acked while InfluxDB is down"
        assert svc.stats.write_failures >= 5
        assert 0 < peak <= max_in_flight, "the broker hands us at most receive-maximum un-acked messages"
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50_000, "memory stays bounded"
        own.start()
        wait_until(lambda: count(db) >= len(ids), timeout=60, what="all ratings after recovery")
        stored = event_ids(db)
        assert len(stored) == len(ids) and set(stored) == ids
    finally:
        svc.stop()
        own.stop()


def test_field_type_conflict_is_dead_lettered_and_stream_continues(mqtt_settings: MqttSettings,
                                                                   influx_db: InfluxQL, uid: str) -> None:
    # someone wrote score as a string into this shard: InfluxDB will refuse every int score forever
    urllib.request.urlopen(urllib.request.Request(
        f"{influx_db.url}/write?db={influx_db.database}&precision=ms",
        data=f'rating,centre=x score="bad" {int(time.time() * 1000) - 60_000}'.encode(), method="POST"), timeout=5)
    svc = start_ingest(mqtt_settings, influx_db, uid, batch={"max_delay_ms": 300})
    try:
        ev = rating(f"c{uid}", f"d{uid}", "q1", "cb1", "A-1", 1)
        status = f'{{"v":1,"device":"d{uid}","centre":"c{uid}","online":true}}'.encode()
        publish_all(mqtt_settings, f"pub-{uid}", [(status_topic(ev.centre, ev.device), status),
                                                  (rating_topic(ev.centre, ev.device), ev.to_json())])
        row = wait_until(lambda: influx_db.rows('SELECT * FROM "rejected" WHERE "reason" = \'write_rejected\''),
                         what="dead-lettered rating")[0]
        assert "conflict" in row["detail"] and ev.event_id in row["payload"]
        wait_until(lambda: svc.stats.acked >= 2, what="both messages acked")
        later = f'{{"v":1,"device":"d{uid}","centre":"c{uid}","online":false}}'.encode()
        publish_all(mqtt_settings, f"pub2-{uid}", [(status_topic(ev.centre, ev.device), later)])
        wait_until(lambda: len(influx_db.rows('SELECT * FROM "device_status"')) == 2, what="stream continues")
    finally:
        svc.stop()
    assert svc.stats.dead_lettered == 1


def test_restart_rebuilds_ticket_index_from_tickets_and_ratings(mqtt_settings: MqttSettings,
                                                               influx_db: InfluxQL, uid: str) -> None:
    centre = f"c{uid}"
    fleet = TFleet().add(TCentre(centre, province="hue"), TDevice(f"d{uid}", centre, "q1"))
    first = rating(centre, f"d{uid}", "q1", "cb1", "A-1", 1)
    svc = start_ingest(mqtt_settings, influx_db, uid, fleet=fleet)
    try:
        publish_all(mqtt_settings, f"p1-{uid}", [
            (qms_topic(centre, "q1"), ticket_closed("q1", "cb1", "A-1").to_json()),
            (qms_topic(centre, "q1"), ticket_closed("q1", "cb1", "A-2").to_json()),
            (rating_topic(centre, first.device), first.to_json())])
        wait_until(lambda: count(influx_db) == 1 and len(influx_db.rows('SELECT * FROM "ticket"')) == 2,
                   what="first rating and both tickets")
    finally:
        svc.stop()
    dup = rating(centre, f"d{uid}", "q1", "cb1", "A-1", 2, score=1)
    later = rating(centre, f"d{uid}", "q1", "cb1", "A-2", 3)
    svc = start_ingest(mqtt_settings, influx_db, f"r{uid}", fleet=fleet)  # a fresh session: empty memory
    try:
        publish_all(mqtt_settings, f"p2-{uid}", [(rating_topic(centre, e.device), e.to_json())
                                                 for e in (first, dup, later)])
        wait_until(lambda: svc.stats.acked >= 3, what="three ratings judged")
    finally:
        svc.stop()
    assert sorted(event_ids(influx_db)) == sorted([first.event_id, later.event_id])
    rejected = influx_db.rows('SELECT * FROM "rejected"')
    assert [(r["reason"], dup.event_id in r["payload"]) for r in rejected] == [("duplicate_ticket", True)]


@pytest.mark.slow
def test_sigterm_flushes_and_healthz_and_stats(mqtt_settings: MqttSettings, influx_db: InfluxQL,
                                              tmp_path: Path, uid: str) -> None:
    msgs, ids = stream(uid, 4, 100)
    port = free_port()
    cfg = ingest_config(mqtt_settings, influx_db, uid, registry=fleet_dir(tmp_path, uid, 5),
                        health={"http_port": port, "stats_interval_s": 0.3})
    proc = IngestProcess(tmp_path, cfg).start()
    try:
        def healthz() -> dict[str, object] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return dict(json.loads(r.read())) if r.status == 200 else None
            except OSError:
                return None

        body = wait_until(healthz, timeout=20, what="/healthz 200")
        assert body["alive"] is True
        wait_until(lambda: healthz() and healthz()["mqtt_connected"], what="connected per /healthz")  # type: ignore[index]
        # SIGHUP re-reads the registry: retire d4 and its next rating is rejected, without a restart
        devices = Path(str(cfg.registry)) / "devices.toml"
        devices.write_text(devices.read_text().replace(f'[device.d4{uid}]', f'[device.d4{uid}]\nretired = true'))
        proc.signal(signal.SIGHUP)
        wait_until(lambda: "registry reloaded" in proc.log(), what="registry reloaded on SIGHUP")
        late = rating(f"c{uid}", f"d4{uid}", "q4", "cb1", "Z-1", 999)
        publish_all(mqtt_settings, f"pub2-{uid}", [(rating_topic(late.centre, late.device), late.to_json())])
        wait_until(lambda: influx_db.rows('SELECT * FROM "rejected" WHERE "reason" = \'retired_device\''),
                   what="retired_device after the reload")
        publish_all(mqtt_settings, f"pub-{uid}", msgs)
        wait_until(lambda: count(influx_db) >= 50, what="some written")
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.log()
        log = proc.log()
        assert "stopped: received=" in log
        stats = influx_db.rows(f'SELECT * FROM "ingest_stats" WHERE "instance" = \'{cfg.client_id}\'')
        assert stats and max(int(r["received"]) for r in stats) > 0
        proc = IngestProcess(tmp_path, cfg).start()  # whatever was not acked is redelivered to the same session
        wait_until(lambda: count(influx_db) >= len(ids), timeout=30, what="the rest after restart")
        time.sleep(0.3)
        stored = event_ids(influx_db)
        assert len(stored) == len(set(stored)) == len(ids) and set(stored) == ids
    finally:
        proc.stop()


def test_systemd_notify_ready_and_watchdog(mqtt_settings: MqttSettings, influx_db: InfluxQL, tmp_path: Path,
                                           uid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd (Type=notify, WatchdogSec=) the service says READY=1 once connected and subscribed, then
    WATCHDOG=1 while it runs; each with its MQTT state (HAILONG_MQTT=, for the worker supervisor)."""
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    svc = start_ingest(mqtt_settings, influx_db, uid)
    seen: list[list[str]] = []
    try:
        while not (seen and seen[-1][0] == "WATCHDOG=1" and any(m[0] == "READY=1" for m in seen)):
            seen.append(sock.recv(256).decode().splitlines())
            if seen[-1][0] == "READY=1":
                assert svc.ready, "READY=1 only once connected and subscribed"
    finally:
        svc.stop()
        sock.close()
    ready = [i for i, m in enumerate(seen) if m[0] == "READY=1"]
    assert len(ready) == 1 and seen[ready[0]] == ["READY=1", "HAILONG_MQTT=ready"], seen
    # pings before it (the loop turns while connecting) say so; never "ready" before READY=1
    assert all(m[0] == "WATCHDOG=1" and m[1] != "HAILONG_MQTT=ready" for m in seen[:ready[0]]), seen
    assert seen[-1] == ["WATCHDOG=1", "HAILONG_MQTT=ready"], seen
