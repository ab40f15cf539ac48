"""The batch writer in-process: retries while InfluxDB fails, bisects a batch to dead-letter the
one point InfluxDB refuses, keeps every other point.

InfluxDB itself is replaced here by a scripted in-memory writer (tests/support/scripted_influx.py),
because what is tested is the batching logic; the real V1/V2 writers are tested against the real
InfluxDB 1.6.7 in tests/ingest/test_lineproto.py and the ingest's fault tests.
"""

from __future__ import annotations

import threading

import pytest

from ingest.config import BatchSettings
from ingest.stats import IngestStats
from ingest.writer import BatchWriter
from storage.lineproto import Point
from tests.support.scripted_influx import ScriptedInflux


def points(n: int, bad: set[int] = frozenset()) -> list[Point]:  # type: ignore[assignment]
    return [Point("rating", {"centre": "c1"}, {"score": i, "note": "BAD" if i in bad else "ok"}, 1_000 + i)
            for i in range(n)]


def dead_letter(p: Point, msg: str) -> Point:
    return Point("rejected", {"reason": "write_rejected"}, {"detail": msg}, p.time_ns)


def writer(db: ScriptedInflux) -> tuple[BatchWriter, IngestStats]:
    stats = IngestStats()
    return BatchWriter(db, BatchSettings(retry_initial_ms=10, retry_max_ms=100), stats, dead_letter), stats


def test_a_batch_is_written_once_when_influx_answers() -> None:
    db = ScriptedInflux()
    w, stats = writer(db)
    assert w.write(points(50), threading.Event(), lambda: None)
    assert len(db.stored) == 50 and db.calls == 1 and stats.written == 50 and w.last_write_ok


def test_retryable_failures_are_retried_until_written_and_the_watchdog_is_fed() -> None:
    db = ScriptedInflux(busy=range(1, 4))
    w, stats = writer(db)
    beats: list[int] = []
    assert w.write(points(10), threading.Event(), lambda: beats.append(1))
    assert len(db.stored) == 10 and stats.write_failures == 3 and len(beats) == 3


@pytest.mark.parametrize(("n", "bad"), [(1, {0}), (8, {3}), (9, {0, 8}), (64, {5, 6, 40})])
def test_refused_points_are_isolated_and_dead_lettered_the_rest_written(n: int, bad: set[int]) -> None:
    db = ScriptedInflux()
    w, stats = writer(db)
    assert w.write(points(n, bad), threading.Event(), lambda: None)
    kept = [line for line in db.stored if line.startswith("rating")]
    dead = [line for line in db.stored if line.startswith("rejected")]
    assert len(kept) == n - len(bad) and len(dead) == len(bad)
    assert stats.dead_lettered == len(bad) and stats.rejected["write_rejected"] == len(bad)


def test_stop_during_an_outage_returns_false_after_one_last_attempt() -> None:
    db = ScriptedInflux(busy=range(1, 1001))
    w, _ = writer(db)
    stop = threading.Event()
    stop.set()
    assert not w.write(points(5), stop, lambda: None)
    assert db.calls == 2 and db.stored == [], "one attempt, one last attempt at stop, nothing claimed written"


def test_a_batch_retried_in_the_middle_of_a_bisection_is_counted_once() -> None:
    db = ScriptedInflux(busy=[3])  # 1: the batch (400), 2: its first half stored, 3: its second half 503
    w, stats = writer(db)
    assert w.write(points(8, {6}), threading.Event(), lambda: None)
    assert stats.write_failures == 1 and stats.dead_lettered == 1
    assert stats.written == 7, "7 points written (1 dead-lettered), the re-written first half counted once"
