"""Benchmark: officer weekly scorecard query over a synthetic province-year of ratings.

    python bench/scorecard_query.py --ratings 20000000 --budget-s 900
    python bench/scorecard_query.py --ratings 20000000 --weeks 12 --web-share 0.1 --skip-panels

Starts a private InfluxDB 1.6.7 (hailong.localstack) in a temp dir,
writes a province-year in time order as line protocol in big batches (rating
points with the tags of the real schema and the fields the scorecard reads,
plus one ``ticket`` point per served ticket), then times:
- the full weekly scorecard of one centre (``dashboards.scorecard.weekly_scorecard``:
  6 InfluxQL queries incl. a 9-week trend, the web count per officer and the web's delay), and
- the officer scorecard dashboard's ratio + response-rate queries for one officer-week.
If writing all ratings does not fit in --budget-s, it stops, queries what was
written and says so (the query scans one centre-week, so its cost depends on
the week's data, not on the year's total). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Queue

import numpy as np

from dashboards.boards import all_dashboards
from dashboards.rollup import backfill
from dashboards.scorecard import IsoWeek, weekly_scorecard
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dashboards.grafana_backend import TimeRange
from tests.dashboards.grafana_frontend import show_panel

TZ = "Asia/Ho_Chi_Minh"
OFFICER_SEL: dict[str, list[str] | None] = {"province": ["p1"], "centre": ["c03"], "officer": ["o03-05"]}

CENTRES = 20
COUNTERS = 12  # per centre
OFFICERS_PER_CENTRE = 18
SERVICES = ("ho-tich", "dat-dai", "dau-tu", "xay-dung", "tu-phap", "lao-dong", "giao-thong", "y-te")
CLASSES = ("very_satisfied", "satisfied", "satisfied", "not_satisfied")  # index = 4 - score
REASONS = ("", "", "", "thai_do", "thoi_gian_cho,huong_dan", "thu_tuc")
YEAR = 2025
WORKDAYS = [d for d in (datetime(YEAR, 1, 1, tzinfo=UTC) + timedelta(days=i) for i in range(365)) if d.weekday() < 5]
DB = "bench"
WEEK = 40  # the ISO week the scorecard and the dashboards are timed on


WEB_SOURCES = ("qr", "sms", "zalo", "terminal-qr")


def day_lines(day: datetime, per_day: int, rng: np.random.Generator,
              web_share: float = 0.0) -> tuple[list[str], list[str]]:
    """Ratings and tickets of one working day, in time order (TSM appends are cheapest).

    ``web_share`` of the ticket-bound ratings come from the web link instead of the terminal, as the ingest
    stores them: tag device=web, the close's counter and officer, fields input=web, source and response_ms
    (minutes to days after the close)."""
    start_ns = int((day + timedelta(hours=1)).timestamp()) * 1_000_000_000  # 08:00 +07
    offsets = np.sort(rng.integers(0, 9 * 3600 * 1_000_000_000, per_day))
    centre = rng.integers(0, CENTRES, per_day)
    counter = rng.integers(0, COUNTERS, per_day)
    # each counter has the same officer all day, rotating between days
    officer = (counter + day.toordinal()) % OFFICERS_PER_CENTRE
    service = rng.integers(0, len(SERVICES), per_day)
    score = np.minimum(4, rng.integers(1, 9, per_day)) if per_day else np.array([], dtype=np.int64)
    walkup = rng.random(per_day) < 0.03
    response = rng.integers(300, 40_000, per_day)
    reason = rng.integers(0, len(REASONS), per_day)
    web = rng.random(per_day) < web_share
    web_delay = rng.integers(60_000, 3 * 86_400_000, per_day)
    source = rng.integers(0, len(WEB_SOURCES), per_day)
    ratings: list[str] = []
    tickets: list[str] = []
    for i in range(per_day):
        c, q, o, s = int(centre[i]), int(counter[i]), int(officer[i]), SERVICES[int(service[i])]
        t = start_ns + int(offsets[i])
        sc = int(score[i])
        tags = (f"centre=c{c:02d},class={CLASSES[4 - sc]},counter=q{q:02d},device=d{c:02d}-{q:02d},"
                f"officer=o{c:02d}-{o:02d},province=p1,service={s}")
        if walkup[i]:
            ratings.append(f"rating,{tags},walkup=true reasons=\"\",scale=4i,score={sc}i {t}")
            continue
        ticket = f"A-{i}"
        if web[i]:  # rated later from the phone: the rating is stamped then, its ticket closed before
            wtags = tags.replace(f"device=d{c:02d}-{q:02d}", "device=web")
            ratings.append(f'rating,{wtags},walkup=false reasons="{REASONS[int(reason[i])] if sc < 4 else ""}",'
                           f'input="web",source="{WEB_SOURCES[int(source[i])]}",response_ms={int(web_delay[i])}i,'
                           f'scale=4i,score={sc}i,ticket="{ticket}" {t}')
            ttags = f"centre=c{c:02d},counter=q{q:02d},officer=o{c:02d}-{o:02d},province=p1,service={s}"
            tickets.append(f'ticket,{ttags} ticket="{ticket}" {t - int(web_delay[i]) * 1_000_000}')
            continue
        ratings.append(f'rating,{tags},walkup=false reasons="{REASONS[int(reason[i])] if sc < 4 else ""}",'
                       f'response_ms={int(response[i])}i,scale=4i,score={sc}i,ticket="{ticket}" {t}')
        ttags = f"centre=c{c:02d},counter=q{q:02d},officer=o{c:02d}-{o:02d},province=p1,service={s}"
        tickets.append(f'ticket,{ttags} ticket="{ticket}" {t - int(response[i]) * 1_000_000}')
        if i % 4 == 0:  # served but not rated: response rate ~ 80 %
            tickets.append(f'ticket,{ttags} ticket="B-{i}" {t - 90_000_000_000}')
    return ratings, tickets


def writer(url: str, queue: Queue[bytes | None], errors: list[str]) -> None:
    while (body := queue.get()) is not None:
        req = urllib.request.Request(f"{url}/write?db={DB}&precision=ns", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                if resp.status != 204:
                    errors.append(f"HTTP {resp.status}")
        except OSError as exc:
            errors.append(str(exc))


def load(server: InfluxServer, total: int, budget_s: float, batch: int, weeks: int = 0,
         web_share: float = 0.0) -> tuple[int, int, float]:
    """A province-year at ``total`` ratings a year; with ``weeks``, only the last ``weeks`` ISO weeks up to
    :data:`WEEK` at that density (the timed scorecard reads one centre-week and a 9-week trend)."""
    rng = np.random.default_rng(2025)
    per_day = total // len(WORKDAYS)
    days = WORKDAYS
    if weeks:
        first = IsoWeek(YEAR, WEEK).shifted(1 - weeks).start("UTC")
        last = IsoWeek(YEAR, WEEK).shifted(1).start("UTC")
        days = [d for d in WORKDAYS if first <= d < last]
    queue: Queue[bytes | None] = Queue(maxsize=4)
    errors: list[str] = []
    threads = [threading.Thread(target=writer, args=(server.url, queue, errors)) for _ in range(2)]
    for t in threads:
        t.start()
    n_ratings = n_points = 0
    t0 = time.monotonic()
    buf: list[str] = []
    for d, day in enumerate(days):
        ratings, tickets = day_lines(day, per_day, rng, web_share)
        buf += ratings + tickets
        n_ratings += len(ratings)
        n_points += len(ratings) + len(tickets)
        while len(buf) >= batch:
            queue.put("\n".join(buf[:batch]).encode())
            del buf[:batch]
        if time.monotonic() - t0 > budget_s:
            print(f"budget reached after {d + 1} of {len(days)} working days")
            break
        if d % 20 == 0:
            el = time.monotonic() - t0
            print(f"day {d + 1}/{len(days)}: {n_ratings:,} ratings, {n_points / el:,.0f} points/s", flush=True)
    if buf:
        queue.put("\n".join(buf).encode())
    for _ in threads:
        queue.put(None)
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"write errors: {errors[:3]}")
    return n_ratings, n_points, time.monotonic() - t0


def datetime_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def timed(fn: object, runs: int = 5) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=20_000_000)
    ap.add_argument("--budget-s", type=float, default=900)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-load", action="store_true", help="reuse the data already in --workdir")
    ap.add_argument("--chunk-days", type=int, default=7, help="rollup backfill: days per SELECT INTO")
    ap.add_argument("--skip-backfill", action="store_true", help="with --skip-load: rollups already computed")
    ap.add_argument("--weeks", type=int, default=0,
                    help="load only the last N ISO weeks up to week 40, at the density of --ratings a year")
    ap.add_argument("--web-share", type=float, default=0.0,
                    help="share of ticket-bound ratings given from the web link (device web, delay after the close)")
    ap.add_argument("--skip-panels", action="store_true", help="time the weekly scorecard only")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hl-bench-"))
    server = InfluxServer(workdir).start(timeout=300)  # reopening gigabytes of TSM takes a while
    try:
        db = InfluxQL(server.url, DB, timeout=300)
        db.create_database()
        if args.skip_load:
            n = int(db.scalar('SELECT count("score") FROM "rating"'))
            print(f"reusing {workdir}: {n:,} ratings")
        else:
            n, points, secs = load(server, args.ratings, args.budget_s, args.batch, args.weeks, args.web_share)
            print(f"wrote {n:,} ratings ({points:,} points incl. tickets) in {secs:.0f} s = "
                  f"{points / secs:,.0f} points/s")
        # InfluxDB 1.6 has been seen to under-count right after a heavy load while it snapshots
        # its cache; re-count until stable (bounded) and report both.
        counts = [db.scalar('SELECT count("score") FROM "rating"')]
        deadline = time.monotonic() + 120
        while counts[-1] != n and time.monotonic() < deadline:
            time.sleep(5)
            counts.append(db.scalar('SELECT count("score") FROM "rating"'))
        print(f"InfluxDB counts {counts[-1]:,} ratings (first count {counts[0]:,}, {len(counts)} counts)")
        full = n >= (args.ratings * args.weeks / 52 if args.weeks else args.ratings) * 0.8
        week = IsoWeek(YEAR, WEEK if full or args.weeks else max(2, int(WEEK * n / args.ratings)))
        settings = DashboardSettings.model_validate({"influx": {"url": server.url, "database": DB}})
        t = time.monotonic()
        # only the 12 weeks the timed dashboards read (a whole year takes ~1 min per week here)
        first, last = week.shifted(-11).start(TZ), week.shifted(1).start(TZ)
        rolled = 0 if args.skip_backfill else backfill(db, settings, first, last, chunk_days=args.chunk_days)
        print(f"rollup backfill {week.shifted(-11)}..{week}: {rolled:,} ratings/tickets/reasons rolled up in "
              f"{time.monotonic() - t:.0f} s ({(time.monotonic() - t) / 12:.0f} s per week of data)")
        window = f"time >= {datetime_ms(first)}ms AND time < {datetime_ms(last)}ms"
        n_rollup = db.scalar(f'SELECT count("n") FROM "rating_1d" WHERE {window}')
        n_raw = db.scalar(f'SELECT count("score") FROM "rating" WHERE {window}')
        print(f"rollup points: {n_rollup:,} in rating_1d for {n_raw:,} ratings")
        card = weekly_scorecard(db, "c03", week, TZ, 30)
        print(f"scorecard {week} centre c03: {len(card.officers)} officers, {card.centre_rated} rated tickets")
        print(f"  web: {card.centre_web} of {card.centre_rated} rated on the web; delay median "
              f"{card.web_delay_median_s} s, p90 {card.web_delay_p90_s} s")
        ts = timed(lambda: weekly_scorecard(db, "c03", week, TZ, 30))
        print(f"report: weekly scorecard of centre c03 (raw points, 6 queries incl. 9-week trend, web count and "
              f"web delay): median {statistics.median(ts) * 1000:.0f} ms, max {max(ts) * 1000:.0f} ms")
        start, stop = week.start(TZ), week.shifted(1).start(TZ)
        where = (f"time >= {datetime_ms(start)}ms AND time < {datetime_ms(stop)}ms AND \"centre\" = 'c03' "
                 "AND \"walkup\" = 'false' AND \"device\" = 'web'")
        channel_queries = (f'SELECT count("score") AS n FROM "rating" WHERE {where} GROUP BY "officer"',
                           f'SELECT median("response_ms") / 1000 AS m, percentile("response_ms", 90) / 1000 AS p '
                           f'FROM "rating" WHERE {where}')
        tc = timed(lambda: [db.rows(q) for q in channel_queries])
        print(f"  of which the 2 channel queries (web count per officer, web delay): median "
              f"{statistics.median(tc) * 1000:.0f} ms ({statistics.median(tc) / statistics.median(ts):.0%} of the "
              "report)")
        if args.skip_panels:
            return
        end = week.shifted(1).start(TZ)
        cases = (("hl-officer", datetime_ms(week.shifted(-11).start(TZ)), OFFICER_SEL, "12 weeks, officer o03-05"),
                 ("hl-province", datetime_ms(end - timedelta(days=30)), {}, "30 days, whole province"),
                 ("hl-centre", datetime_ms(end - timedelta(days=7)), {"centre": ["c03"]}, "7 days, centre c03"))
        for use_rollups in (True, False):
            boards = {b.uid: b for b in all_dashboards(settings.model_copy(update={"use_rollups": use_rollups}))}
            for uid, start_ms, sel, what in cases:
                board = boards[uid]
                js = board.to_json(settings.datasource_uid)
                if uid == "hl-centre" and not use_rollups:
                    continue  # never reads rollups
                for spec, panel in zip(board.panels, js["panels"], strict=True):
                    rng = TimeRange(start_ms, datetime_ms(end) - 1)
                    ts = timed(lambda js=js, panel=panel, rng=rng, sel=sel: show_panel(
                        db, js, panel, rng, datetime_ms(end) - 1, sel, 3_600_000), runs=3)
                    mode = "rollup" if use_rollups and uid != "hl-centre" else "raw"
                    print(f"panel {spec.key:28s} {what:26s} {mode:6s} median {statistics.median(ts) * 1000:7.0f} ms")
        size = sum(p.stat().st_size for p in (workdir / "data").rglob("*") if p.is_file())
        print(f"data dir {size / 1e9:.2f} GB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
