"""`hailong ingest run` with workers = 2 against the broker `hailong broker render` produced.

One command, two worker processes: each logs in as its own broker user with its own secret
(svc.ingest, svc.ingest.w1: the broker forces client id = username), judges its partition of the
centres (so a ticket's two presses meet one judge and duplicate_ticket holds across workers), and
is supervised: a killed worker is restarted, SIGTERM stops them all, and a SIGKILLed supervisor
takes its workers with it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.contract import qms_topic, rating_topic
from broker.fleet.credentials import FleetState
from ingest.partition import partition_of
from storage.influxql import InfluxQL
from tests.broker.fleet_broker import FleetBroker, Probe, close, probe, start_fleet_broker
from tests.support.ingest import now_ms, rating, ticket_closed
from tests.support.ingest_run import IngestRun
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

QMS_CENTRE, QMS_DEVICE, QMS_COUNTER = "qn-tthc", "qn-q01", "q01"
PLAIN_CENTRE, PLAIN_DEVICE, PLAIN_COUNTER, PLAIN_OFFICER = "dn-tthc", "dn-q01", "q01", "le-thi-huong"


def _prepare(_fleet: Path, state: FleetState) -> None:
    for dev in (QMS_DEVICE, PLAIN_DEVICE):
        state.password(dev)


@pytest.fixture
def fb(tmp_path: Path) -> Iterator[FleetBroker]:
    broker = start_fleet_broker(tmp_path, _prepare)
    yield broker
    broker.server.stop()


def _device(fb: FleetBroker, name: str, device: str) -> Probe:
    p = probe(fb, name, user=device, password=fb.password(device))
    assert p.connect_rc is not None and not p.connect_rc.is_failure, p.connect_rc
    return p


def _publish(p: Probe, msgs: list[tuple[str, bytes]]) -> None:
    infos = [p.client.publish(t, b, qos=1) for t, b in msgs]
    wait_until(lambda: all(i.mid in p.puback for i in infos), 30, what="PUBACKs")
    assert not any(p.puback[i.mid].is_failure for i in infos), "the broker refused a publish"


def _count(db: InfluxQL, q: str) -> int:
    return int(db.scalar(q) or 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a dead parent's init) counts as gone
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def _worker_pids(sup: IngestRun) -> list[int]:
    h = sup.health()
    assert h is not None
    return [int(w["pid"]) for w in h["workers"] if w["pid"] is not None]


def _streams(seq0: int, n: int, doubled: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]],
                                                       list[tuple[str, bytes]]]:
    """QMS closes, ratings of the QMS centre, ratings of the plain centre; ``doubled`` tickets pressed twice."""
    closes, qms_ratings, plain_ratings = [], [], []
    now = now_ms()
    for i in range(n):
        number = f"W{seq0 + i:03d}"
        closes.append((qms_topic(QMS_CENTRE, QMS_COUNTER),
                       ticket_closed(QMS_COUNTER, "nguyen-thi-lan", number, at=now - 3000).to_json()))
        presses = 2 if i < doubled else 1
        for k in range(presses):
            seq = (seq0 + i) * 2 + k
            qms_ratings.append((rating_topic(QMS_CENTRE, QMS_DEVICE), rating(
                QMS_CENTRE, QMS_DEVICE, QMS_COUNTER, "nguyen-thi-lan", number, seq, score=4 - k).to_json()))
            plain_ratings.append((rating_topic(PLAIN_CENTRE, PLAIN_DEVICE), rating(
                PLAIN_CENTRE, PLAIN_DEVICE, PLAIN_COUNTER, PLAIN_OFFICER, number, seq, score=4 - k).to_json()))
    return closes, qms_ratings, plain_ratings


def test_two_workers_split_the_centres_and_duplicates_hold_across_them(
        fb: FleetBroker, influx_db: InfluxQL, tmp_path: Path) -> None:
    centres = [QMS_CENTRE, PLAIN_CENTRE]
    assert partition_of(QMS_CENTRE, centres, 2) != partition_of(PLAIN_CENTRE, centres, 2), "one centre each"
    sup = IngestRun(tmp_path, fb, influx_db, session_expiry_s=300).start()
    qms = probe(fb, "qms", user=f"svc.qms.{QMS_CENTRE}", password=fb.password(f"svc.qms.{QMS_CENTRE}"))
    dev_q, dev_p = _device(fb, "dev-q", QMS_DEVICE), _device(fb, "dev-p", PLAIN_DEVICE)
    try:
        wait_until(sup.healthy, 60, what=f"both workers ready\n{sup.log()}")
        h = sup.health()
        assert h is not None and [w["client_id"] for w in h["workers"]] == ["svc.ingest", "svc.ingest.w1"]
        closes, q_ratings, p_ratings = _streams(1, 20, doubled=5)
        _publish(qms, closes)
        time.sleep(0.5)  # closes first: a rating whose close has not arrived is only held, but keep it simple
        _publish(dev_q, q_ratings)
        _publish(dev_p, p_ratings)
        wait_until(lambda: _count(influx_db, 'SELECT count("score") FROM "rating"') >= 40, 60,
                   what=f"40 ratings stored\n{sup.log()}")
        wait_until(lambda: _count(influx_db, "SELECT count(\"payload\") FROM \"rejected\" "
                                  "WHERE \"reason\" = 'duplicate_ticket'") >= 10, 30, what="10 duplicate_ticket")
        time.sleep(1.0)  # nothing more may land
        assert _count(influx_db, 'SELECT count("score") FROM "rating"') == 40
        assert _count(influx_db, "SELECT count(\"payload\") FROM \"rejected\" "
                      "WHERE \"reason\" = 'duplicate_ticket'") == 10
        # each worker judged its own centre: both stats series exist and both counted ratings
        by_instance = {r["instance"]: r for r in influx_db.rows(
            'SELECT last("ratings") AS "ratings" FROM "ingest_stats" GROUP BY "instance"')}
        assert set(by_instance) == {"svc.ingest", "svc.ingest.w1"}, by_instance
        assert all(float(r["ratings"]) == 20 for r in by_instance.values()), by_instance

        # a worker killed hard is restarted by the supervisor, and ratings keep flowing exactly once
        victim = _worker_pids(sup)[1]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: (x := sup.health()) is not None and x["workers"][1]["restarts"] == 1
                   and x["alive"], 60, what=f"worker 1 restarted\n{sup.log()}")
        _, _, p2 = _streams(100, 5, doubled=0)
        _publish(dev_p, p2)
        wait_until(lambda: _count(influx_db, 'SELECT count("score") FROM "rating"') >= 45, 60,
                   what="ratings after the restart")

        # SIGTERM: every worker flushes and exits, then the supervisor
        pids = _worker_pids(sup)
        assert sup.proc is not None
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(60) == 0
        wait_until(lambda: not any(_alive(p) for p in pids), 10, what="workers gone after SIGTERM")
        assert _count(influx_db, 'SELECT count("score") FROM "rating"') == 45
    finally:
        for p in (qms, dev_q, dev_p):
            close(p)
        sup.kill()


def test_a_killed_supervisor_takes_its_workers_with_it(fb: FleetBroker, influx_db: InfluxQL, tmp_path: Path) -> None:
    sup = IngestRun(tmp_path, fb, influx_db, session_expiry_s=300).start()
    try:
        wait_until(sup.healthy, 60, what=f"both workers ready\n{sup.log()}")
        pids = _worker_pids(sup)
        assert len(pids) == 2
        sup.kill()  # SIGKILL: no chance to forward anything; the kernel's parent-death signal does it
        wait_until(lambda: not any(_alive(p) for p in pids), 20, what="workers gone after the supervisor died")
    finally:
        sup.kill()
