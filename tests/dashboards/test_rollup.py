"""Daily rollups: exact against the raw points for whole days, and the continuous queries really run."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.rollup import REASON_1D, backfill, day_offset, install, installed, rollup_selects
from dashboards.settings import DashboardSettings
from hailong.cli import main
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL
from storage.lineproto import Point
from tests.support.waiting import wait_until

from .conftest import Seeded
from .seed import FIRST_MONDAY, TZ, in_range, ms, write_points


def test_day_offset_puts_days_at_local_midnight() -> None:
    assert day_offset("Asia/Ho_Chi_Minh") == "17h" and day_offset("UTC") == "0h"
    with pytest.raises(ValueError, match="daylight saving"):
        day_offset("Europe/Paris")


def test_rollups_equal_raw_counts_per_day_and_officer(seeded: Seeded) -> None:
    db, seed = seeded.db, seeded.seed
    rows = db.rows('SELECT sum("n") AS n FROM "rating_1d" WHERE time >= 0 GROUP BY time(1d, 17h), "officer", '
                   '"walkup" fill(none)')
    got = {(r["time"], r["officer"], r["walkup"]): r["n"] for r in rows}
    want: Counter[tuple[int, str, str]] = Counter()
    for r in seed.ratings:
        local = datetime.fromtimestamp(r.time_ns / 1e9, TZ).replace(hour=0, minute=0, second=0, microsecond=0)
        want[(ms(local), r.officer, "true" if r.walkup else "false")] += 1
    assert got == dict(want)
    reasons = db.rows(f'SELECT sum("thai_do") AS n FROM "{REASON_1D}" WHERE time >= 0 GROUP BY "centre"')
    assert {r["centre"]: r["n"] for r in reasons} == dict(
        Counter(r.centre for r in seed.ratings if "thai_do" in r.reasons))
    by_centre = db.rows('SELECT sum("n") AS n FROM "rating_centre_1d" WHERE time >= 0 GROUP BY "centre", "class"')
    assert {(r["centre"], r["class"]): r["n"] for r in by_centre} == dict(
        Counter((r.centre, r.cls) for r in seed.ratings))
    served = db.rows('SELECT sum("n") AS n FROM "ticket_1d" WHERE time >= 0 GROUP BY "counter", "centre"')
    assert {(r["centre"], r["counter"]): r["n"] for r in served} == dict(
        Counter((t.centre, t.counter) for t in seed.tickets))


# How long one CQ round may take to show in the rollups before the test calls the CQ service broken. The
# waits end as soon as the rollup shows (under a second on an idle machine: the CQs run at every whole
# second); the bound only has to outlast a round of the 10 CQs, each a query and an fsynced write, on
# this 2-core machine under a full suite and other sessions: 20 s was once not enough. Two waits stay
# under pytest-timeout's 300 s.
CQ_ROUND_DEADLINE = 90.0


@pytest.fixture
def cq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """An InfluxDB of its own for the CQ test, the only one with CQs every second: its CQ service looks
    for due CQs every 100 ms, so the next run of a CQ with ``RESAMPLE EVERY 1s`` starts at the next
    whole second, and it logs every CQ execution (a failing test prints the log)."""
    server = InfluxServer(tmp_path_factory.mktemp("influx_cq"), cq_run_interval="100ms", cq_log=True).start()
    yield server
    server.stop()


def _await_rollup(read: Callable[[], object], done: Callable[[object], bool], what: str) -> object:
    """Poll what the CQs wrote until ``done``, bounded by CQ_ROUND_DEADLINE; a timeout says what was read."""
    last: list[object] = [None]

    def check() -> bool:
        last[0] = read()
        return done(last[0])

    try:
        wait_until(check, timeout=CQ_ROUND_DEADLINE, interval=0.25, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; the rollup last read {last[0]!r}") from None
    return last[0]


def test_continuous_queries_run_and_backfill_catches_late_ratings(
        cq_server: InfluxServer, uid: str, tmp_path: Path) -> None:
    db = InfluxQL(cq_server.url, f"t_{uid}")
    db.create_database()
    s = DashboardSettings(timezone="UTC")
    assert set(install(db, s, every="1s", resample_for="2d")) == set(rollup_selects(s))
    assert installed(db) == set(rollup_selects(s))
    install(db, s, every="1s", resample_for="2d")  # idempotent: recreated, not duplicated
    assert installed(db) == set(rollup_selects(s))
    now_ns = time.time_ns()

    def rating(i: int, ago_s: float) -> Point:
        tags = {"province": "p", "centre": f"c-{uid}", "counter": "q1", "officer": "o1", "device": "d1",
                "class": "satisfied", "walkup": "false"}
        return Point("rating", tags, {"score": 3, "reasons": "thai_do" if i % 2 else ""},
                     now_ns - int(ago_s * 1e9) - i)

    total = 'SELECT sum("n") FROM "rating_1d" WHERE time >= 0'
    thai_do = f'SELECT sum("thai_do") FROM "{REASON_1D}" WHERE time >= 0'
    # nothing but the CQ service writes the rollups until the backfill below: what shows was computed by CQs
    write_points(cq_server.url, db.database, [rating(i, 60) for i in range(7)])
    _await_rollup(lambda: (db.scalar(total), db.scalar(thai_do)), lambda got: got == (7, 3),
                  "the CQs to roll up the day (7 ratings, 3 with thai_do)")

    # a terminal offline for 4 days delivers late: outside the CQ's 2-day resample window. The late ratings
    # are stored (their write answered) before the current one is written, so the CQ run that counts the
    # current one read them too: that it leaves them out is the resample window, not the order of writes.
    late_ns = now_ns - 4 * 86400 * 10**9
    write_points(cq_server.url, db.database, [rating(100 + i, 4 * 86400) for i in range(2)])
    write_points(cq_server.url, db.database, [rating(200, 30)])
    got = _await_rollup(lambda: db.scalar(total), lambda n: isinstance(n, int) and n >= 8,
                        "the CQ to roll up the current rating")
    assert got == 8, f"the late day is outside the resample window, yet the rollup counts {got}"
    day = datetime.fromtimestamp((late_ns - 101) // 10**9, UTC).replace(hour=0, minute=0, second=0)
    late_day = (f'SELECT sum("n") FROM "rating_1d" WHERE time >= {ms(day)}ms '
                f"AND time < {ms(day + timedelta(days=1))}ms")
    assert db.scalar(late_day) is None, "the CQ rolled up a day outside its resample window"

    cfg = tmp_path / "utc.toml"
    cfg.write_text('timezone = "UTC"\n', encoding="utf-8")
    result = CliRunner().invoke(main, [
        "dashboards", "rollup", "backfill", "--influx-url", db.url, "--db", db.database,
        "--since", f"{day:%Y-%m-%d}", "--until", f"{day:%Y-%m-%d}", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert db.scalar(late_day) == 2 and db.scalar(total) == 10


def test_partial_day_ranges_follow_the_day_buckets(seeded: Seeded) -> None:
    """Documented limit: from the rollup, a first partial day is left out and a last partial day counts whole."""
    noon = FIRST_MONDAY + timedelta(hours=12)
    next_day = FIRST_MONDAY + timedelta(days=1)
    raw_afternoon = sum(1 for r in seeded.seed.ratings if in_range(r.time_ns, ms(noon), ms(next_day) - 1))
    whole_day = sum(1 for r in seeded.seed.ratings if in_range(r.time_ns, ms(FIRST_MONDAY), ms(next_day) - 1))
    assert raw_afternoon > 0

    def rollup(start: datetime, end: datetime) -> int | None:
        q = f'SELECT sum("n") FROM "rating_1d" WHERE time >= {ms(start)}ms AND time <= {ms(end)}ms'
        result: int | None = seeded.db.scalar(q)
        return result

    assert rollup(noon, next_day - timedelta(seconds=1)) is None  # the day's bucket starts before noon
    assert rollup(FIRST_MONDAY, noon) == whole_day  # the bucket at 00:00 holds the whole day
    assert backfill(seeded.db, seeded.settings, FIRST_MONDAY, next_day) > 0  # recomputing is idempotent
    assert rollup(FIRST_MONDAY, noon) == whole_day
