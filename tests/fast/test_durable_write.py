"""storage.writer's durable write, shared by the ingest and the national consumer: retry while
InfluxDB is away, bisect a permanent refusal down to the refused points and write their
dead-letter points instead.

InfluxDB is a scripted in-memory writer here (tests/support/scripted_influx.py): what is tested is
the retry and bisection logic; the real writers run against InfluxDB 1.6.7 elsewhere
(tests/ingest/test_lineproto.py, the ingest's and the national consumer's end-to-end tests)."""

from __future__ import annotations

import threading

import pytest

from storage.lineproto import Point
from storage.writer import WriteError, write_bisecting, write_retrying
from tests.support.scripted_influx import ScriptedInflux


def _points(n: int, bad: set[int]) -> list[Point]:
    return [Point("agg", {"centre": f"c{i}"}, {"n": i, "note": "BAD" if i in bad else "ok"}, 1_000 + i)
            for i in range(n)]


@pytest.mark.parametrize(("n", "bad"), [(1, set()), (1, {0}), (7, {6}), (16, {0, 15}), (33, {3, 4, 20})])
def test_refused_points_alone_are_replaced_by_their_dead_letter_the_rest_is_written(n: int, bad: set[int]) -> None:
    db = ScriptedInflux()
    pts = _points(n, bad)
    refused: list[tuple[int, str, int | None]] = []

    def dead(p: Point, line: str, exc: WriteError) -> Point:
        refused.append((int(p.fields["n"]), line, exc.status))
        return Point("refused", {"reason": "write_rejected"}, {"bytes": len(line)}, p.time_ns)

    written = write_bisecting(db, [p.to_line() for p in pts], pts, dead)
    assert written == n - len(bad)
    assert sorted(i for i, _, _ in refused) == sorted(bad) and {s for _, _, s in refused} <= {400}
    kept = [p.to_line() for p in pts if p.fields["n"] not in bad]
    assert [line for line in db.stored if line.startswith("agg")] == kept
    assert len([line for line in db.stored if line.startswith("refused")]) == len(bad)


def test_a_retryable_error_inside_a_bisection_is_raised_for_the_caller_to_retry() -> None:
    db = ScriptedInflux(busy=[3])  # 1: the whole batch (400), 2: first half stored, 3: second half 503
    pts = _points(4, {0})
    with pytest.raises(WriteError) as exc:
        write_bisecting(db, [p.to_line() for p in pts], pts, lambda p, line, e: p)
    assert exc.value.retryable


def test_retries_wait_doubling_capped_and_stop_ends_them() -> None:
    waits: list[float] = []
    stop = threading.Event()
    db = ScriptedInflux(busy=range(1, 6))

    def failed(exc: WriteError, wait_s: float) -> None:
        waits.append(wait_s)

    assert write_retrying(lambda: db.write(["agg n=1i"]), stop, 0.001, 0.004, failed)
    assert waits == [0.001, 0.002, 0.004, 0.004, 0.004] and db.stored == ["agg n=1i"]

    stop.set()
    for last, calls in ((False, 1), (True, 2)):
        db = ScriptedInflux(busy=range(1, 100))
        assert not write_retrying(lambda: db.write(["x"]), stop, 0.001, 0.004, failed, last_attempt=last)  # noqa: B023
        assert db.calls == calls, "at stop: no more attempt, or exactly one last attempt"
