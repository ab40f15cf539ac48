"""End to end on loopback, real processes: 3 province brokers bridged over TLS (client certificates
fed.<province>) to a national broker, the national consumer and InfluxDB 1.6.7.

- the national weekly figures (summed counts per province) equal each province's own, exactly,
  and rank the provinces the same way;
- a rogue province cannot write another's aggregates (ACL: nothing arrives), nor claim another
  province's centre under its own prefix (refused: wrong_province);
- the national broker stopped and restarted: the bridges' queues deliver, nothing is missing;
- a province broker SIGKILLed with its queue unsaved: the next re-send heals it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import ssl
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from broker.federation import CentreDay, national_topic
from federation.publish import publish
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL
from storage.schema import Measurement
from tests.support.waiting import wait_until

from .stack import National, Province
from .support import ZONE, local_day, seed_province

PROVINCES = {"pa": 3, "pb": 3, "pc": 2}


def rogue_publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    """Publish until the broker acknowledges it (after a refused publish the connection may be closed: the
    client may have to reconnect first)."""
    for _ in range(10):
        wait_until(client.is_connected, 10, 0.2, what="the rogue (re)connected")
        try:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            continue  # dropped between the check and the publish
        if info.is_published():
            return
    raise AssertionError(f"the broker never acknowledged {topic}")


def rogue_attempt(client: mqtt.Client, topic: str, payload: bytes) -> str:
    """One publish under a prefix the ACL refuses: Mosquitto 2.0.11 drops it and closes the connection, with
    or without a PUBACK first (both seen). Returns what happened: "acked" or "dropped"."""
    wait_until(client.is_connected, 10, 0.2, what="the rogue (re)connected")
    try:
        info = client.publish(topic, payload, qos=1)
    except (RuntimeError, ValueError):
        return "dropped"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not info.is_published() and client.is_connected():
        time.sleep(0.05)
    return "acked" if info.is_published() else "dropped"


def stored_count(db: InfluxQL) -> int:
    return int(db.scalar(f'SELECT count("revision") FROM "{Measurement.AGG_CENTRE_DAY}"') or 0)


@pytest.fixture
def federation(tmp_path: Path, influx_server: InfluxServer) -> Iterator[tuple[National, dict[str, Province]]]:
    centres = {p: [f"{p}-c{i}" for i in range(1, n + 1)] for p, n in PROVINCES.items()}
    nat = National(tmp_path, centres, influx_server)
    provinces: dict[str, Province] = {}
    try:
        nat.broker.start()
        for p in centres:
            provinces[p] = Province(tmp_path, p, centres[p], nat, influx_server)
            provinces[p].broker.start()
        nat.start_consumer()
        yield nat, provinces
    finally:
        for prov in provinces.values():
            prov.stop()
        nat.stop()


def last_full_week() -> tuple[dt.date, dt.date]:
    today = local_day(0)
    monday = today - dt.timedelta(days=today.weekday() + 7)
    return monday, monday + dt.timedelta(days=7)


def week_ms(monday: dt.date) -> tuple[int, int]:
    start = dt.datetime.combine(monday, dt.time(), ZONE)
    return int(start.timestamp() * 1000), int((start + dt.timedelta(days=7)).timestamp() * 1000)


def test_national_ranking_equals_the_provinces_own(federation: tuple[National, dict[str, Province]]) -> None:
    nat, provinces = federation
    monday, _ = last_full_week()
    days = [monday + dt.timedelta(days=i) for i in range(7)]
    window = (local_day(0) - monday).days + 1
    truth = {}
    for seed, (p, prov) in enumerate(provinces.items()):
        truth[p] = seed_province(prov.db.url, prov.db.database, p, prov.centres, days, seed=seed + 11,
                                 per_day=(5, 30))
        publish(prov.federation_config(), days=window)
    expected = sum(len(prov.centres) for prov in provinces.values()) * window
    wait_until(lambda: stored_count(nat.db) == expected, 90, 0.2, what=f"{expected} centre-days stored nationally")
    start, end = week_ms(monday)
    national = {r["province"]: r for r in nat.db.rows(
        f'SELECT sum("rated") AS rated, sum("not_satisfied") AS ns, sum("served") AS served '
        f'FROM "{Measurement.AGG_CENTRE_DAY}" WHERE time >= {start}ms AND time < {end}ms GROUP BY "province"')}
    ratios = {}
    for p, prov in provinces.items():
        # the province's own weekly figures, from its own rollups (what its dashboards show)
        own_rated = prov.db.scalar(f'SELECT sum("n") FROM "{Measurement.RATING_CENTRE_1D}" WHERE "walkup" = '
                                   f"'false' AND time >= {start}ms AND time < {end}ms")
        own_ns = prov.db.scalar(f'SELECT sum("n") FROM "{Measurement.RATING_CENTRE_1D}" WHERE "walkup" = '
                                f"'false' AND \"class\" = 'not_satisfied' AND time >= {start}ms AND time < {end}ms")
        hand_rated = sum(truth[p].of(c, d.isoformat())["rated"] for c in prov.centres for d in days)
        hand_ns = sum(truth[p].of(c, d.isoformat())["not_satisfied"] for c in prov.centres for d in days)
        hand_served = sum(truth[p].of(c, d.isoformat())["served"] for c in prov.centres for d in days)
        assert (national[p]["rated"], national[p]["ns"]) == (own_rated, own_ns or 0) == (hand_rated, hand_ns)
        assert national[p]["served"] == hand_served
        ratios[p] = Fraction(hand_rated - hand_ns, hand_rated)
    nat_ratios = {p: Fraction(r["rated"] - r["ns"], r["rated"]) for p, r in national.items()}
    assert nat_ratios == ratios
    assert sorted(nat_ratios, key=lambda p: -nat_ratios[p]) == sorted(ratios, key=lambda p: -ratios[p])

    # a rogue province: pb's own bridge certificate, straight to the national broker (pb's broker stopped:
    # the client id is forced to the certificate's CN, so the bridge and the rogue would take turns)
    provinces["pb"].broker.stop()
    rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fed.pb", protocol=mqtt.MQTTv311)
    bundle = nat.bundle("pb")
    rogue.tls_set(ca_certs=str(bundle / "national-ca.crt"), certfile=str(bundle / "bridge.crt"),
                  keyfile=str(bundle / "bridge.key"), cert_reqs=ssl.CERT_REQUIRED)
    rogue.reconnect_delay_set(1, 1)
    rogue.connect("localhost", nat.tls_port)
    rogue.loop_start()
    try:
        wait_until(rogue.is_connected, 10, 0.2, what="the rogue connected with pb's certificate")
        day = days[0].isoformat()
        before = nat.db.rows(f'SELECT * FROM "{Measurement.AGG_CENTRE_DAY}" WHERE "centre" = \'pa-c1\'')
        forged = CentreDay.build("pa", "pa-c1", day, int(time.time() * 1000) + 10**9, rated=1, not_satisfied=1,
                                 satisfied=0, very_satisfied=0, walkups=0, served=1)
        attempts = [rogue_attempt(rogue, national_topic("pa", "pa-c1", day), forged.to_json()) for _ in range(5)]
        assert len(attempts) == 5 and set(attempts) <= {"acked", "dropped"}
        claim = CentreDay.build("pb", "pa-c1", day, int(time.time() * 1000), rated=1, not_satisfied=1,
                                satisfied=0, very_satisfied=0, walkups=0, served=1)
        rogue_publish(rogue, national_topic("pb", "pa-c1", day), claim.to_json())
        refused = wait_until(lambda: nat.db.rows(f'SELECT * FROM "{Measurement.AGG_REJECTED}" GROUP BY "reason"'),
                             90, 0.2, what="the claim refused")
        assert [(r["reason"], r["topic"]) for r in refused] == [("wrong_province", f"national/pb/pa-c1/{day}")]
        after = nat.db.rows(f'SELECT * FROM "{Measurement.AGG_CENTRE_DAY}" WHERE "centre" = \'pa-c1\'')
        assert after == before  # the 5 writes under pa's prefix never reached the consumer
    finally:
        rogue.loop_stop()
        rogue.disconnect()


def test_outages_heal(federation: tuple[National, dict[str, Province]]) -> None:
    nat, provinces = federation
    pa = provinces["pa"]
    days = [local_day(1), local_day(0)]
    first = {p: seed_province(prov.db.url, prov.db.database, p, prov.centres, days, seed=5, per_day=(3, 10))
             for p, prov in provinces.items()}
    expected = sum(len(prov.centres) for prov in provinces.values()) * 2

    # the national broker away: the bridges queue, and deliver in order when it is back
    nat.broker.stop()
    for prov in provinces.values():
        publish(prov.federation_config(), days=2)
    time.sleep(1)
    nat.broker.start()
    wait_until(lambda: stored_count(nat.db) == expected, 90, 0.2, what="everything queued during the outage")
    revisions = {r["centre"]: r["revision"] for r in nat.db.rows(
        f'SELECT last("revision") AS revision FROM "{Measurement.AGG_CENTRE_DAY}" GROUP BY "centre"')}

    # a province broker SIGKILLed while its queue toward the nation is not yet saved
    truth = seed_province(pa.db.url, pa.db.database, "pa", pa.centres, [days[1]], seed=99, per_day=(20, 20))
    nat.broker.stop()
    publish(pa.federation_config(), days=2)
    pa.broker.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    pa.broker.proc.wait(10)  # type: ignore[union-attr]
    pa.broker.proc = None
    pa.broker.start()
    nat.broker.start()
    time.sleep(3)  # whatever survived is delivered; the next scheduled re-send heals the rest
    publish(pa.federation_config(), days=2)
    today = days[1].isoformat()

    def healed() -> bool:
        rows = nat.db.rows(f'SELECT "rated", "revision" FROM "{Measurement.AGG_CENTRE_DAY}" '
                           f"WHERE \"centre\" = 'pa-c1' GROUP BY \"centre\"")
        latest = [r for r in rows if r["revision"] > revisions["pa-c1"]]
        return len(latest) == 2

    wait_until(healed, 90, 0.2, what="pa's days re-sent after the SIGKILL")
    rows = nat.db.rows(f'SELECT * FROM "{Measurement.AGG_CENTRE_DAY}" WHERE "province" = \'pa\' GROUP BY "centre"')
    got_today = {r["centre"]: r["served"] for r in rows if dt.datetime.fromtimestamp(r["time"] / 1000, ZONE).date()
                 .isoformat() == today}
    assert got_today == {c: first["pa"].of(c, today)["served"] + truth.of(c, today)["served"] for c in pa.centres}
    assert stored_count(nat.db) == expected  # one point per centre-day, whatever was re-sent


def test_terminal_ratings_reach_the_nation(tmp_path: Path, influx_server: InfluxServer) -> None:
    """The whole chain for one province: terminals and its queue system publish on the province
    broker (their own identities), the real ingest judges and stores them, the rollups are
    backfilled, the aggregates cross the bridge, and the national figures equal what was rated."""
    from ingest.config import IngestConfig
    from ingest.service import IngestService
    from tests.support.ingest import now_ms, publish_all, rating, ticket_closed

    centres = ["ta-c1", "ta-c2"]
    nat = National(tmp_path, {"ta": centres}, influx_server)
    prov = None
    ingest = None
    try:
        nat.broker.start()
        prov = Province(tmp_path, "ta", centres, nat, influx_server, terminals=True)
        prov.broker.start()
        nat.start_consumer()
        ingest = IngestService(IngestConfig.model_validate({
            "mqtt": prov.mqtt_as("svc.ingest").model_dump(mode="json") | {"password": prov.mqtt_as(
                "svc.ingest").secret()},
            "influx": {"url": prov.db.url, "api": "v1", "database": prov.db.database},
            "registry": str(prov.fleet), "province": "ta", "workers": 1, "session_expiry_s": 300,
            "batch": {"size": 100, "max_delay_ms": 50, "max_in_flight": 1000}})).start()
        assert ingest.wait_ready(30), "the ingest is not subscribed: what is published now would not reach it"
        # scores 4,3,2,1,4,... on a 4-level scale: score 1 is "Không hài lòng"
        want = {c: {"rated": 0, "not_satisfied": 0, "served": 0} for c in centres}
        for k, centre in enumerate(centres):
            closes, ratings = [], []
            for i in range(12 + 5 * k):
                ticket = f"A{i:03d}"
                at = now_ms() - 2000
                closes.append((f"hl/v1/{centre}/qms/q01", ticket_closed("q01", "o1", ticket, at=at).to_json()))
                score = 4 - (i % 4)
                if i % 5 != 4:  # every fifth citizen leaves without rating
                    ratings.append((f"hl/v1/{centre}/d-{centre}/rating", rating(
                        centre, f"d-{centre}", "q01", "o1", ticket, i, score=score, closed_at=at).to_json()))
                    want[centre]["rated"] += 1
                    want[centre]["not_satisfied"] += score == 1
                want[centre]["served"] += 1
            publish_all(prov.mqtt_as(f"svc.qms.{centre}"), f"svc.qms.{centre}", closes)
            publish_all(prov.mqtt_as(f"d-{centre}"), f"d-{centre}", ratings)
        total_rated = sum(w["rated"] for w in want.values())
        wait_until(lambda: int(prov.db.scalar('SELECT count("score") FROM "rating"') or 0) == total_rated,
                   90, 0.2, what="the ingest stored every rating")
        publish(prov.federation_config(), days=1)
        today = local_day(0).isoformat()
        rows = wait_until(lambda: nat.db.rows(f'SELECT * FROM "{Measurement.AGG_CENTRE_DAY}" GROUP BY "centre"')
                          if stored_count(nat.db) == 2 else [], 90, 0.2, what="both centres' day stored nationally")
        got = {r["centre"]: {k: r[k] for k in ("rated", "not_satisfied", "served")} for r in rows}
        assert got == want
        assert all(dt.datetime.fromtimestamp(r["time"] / 1000, ZONE).date().isoformat() == today for r in rows)
    finally:
        if ingest is not None:
            ingest.stop()
        if prov is not None:
            prov.stop()
        nat.stop()


def test_a_revoked_bridge_certificate_is_refused(tmp_path: Path, influx_server: InfluxServer) -> None:
    """`hailong national revoke`: the old fed.<province> certificate no longer connects, the new bundle does."""
    from click.testing import CliRunner

    from broker.mosquitto.national import render_national
    from hailong.cli import main

    nat = National(tmp_path, {"ra": ["ra-c1"]}, influx_server)
    old = tmp_path / "old-bundle"
    shutil.copytree(nat.bundle("ra"), old)

    def connects(bundle: Path) -> bool:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fed.ra", protocol=mqtt.MQTTv311)
        client.tls_set(ca_certs=str(bundle / "national-ca.crt"), certfile=str(bundle / "bridge.crt"),
                       keyfile=str(bundle / "bridge.key"), cert_reqs=ssl.CERT_REQUIRED)
        try:
            client.connect("localhost", nat.tls_port)
            client.loop_start()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not client.is_connected():
                time.sleep(0.05)
            return client.is_connected()
        except (OSError, ssl.SSLError):
            return False
        finally:
            client.loop_stop()
            client.disconnect()

    try:
        nat.broker.start()
        assert connects(old)
        result = CliRunner().invoke(main, ["national", "revoke", "--national", str(nat.dir), "--province", "ra"])
        assert result.exit_code == 0 and "revoked fed.ra" in result.output, result.output
        render_national(nat.dir, nat.out)
        nat.broker.restart()
        assert not connects(old)
        assert connects(nat.bundle("ra"))  # the re-issued bundle
    finally:
        nat.stop()
