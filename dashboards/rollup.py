"""Daily rollups (InfluxDB continuous queries) for the long-range dashboards.

Counting raw ratings over 90 days of a province takes seconds on InfluxDB 1.x
(bench/RESULTS.md), so the officer scorecard and province dashboards read
per-day counts instead:
- ``rating_1d``: ``n`` = ratings per local day, every tag kept (``GROUP BY *``);
- ``ticket_1d``: ``n`` = served tickets per local day;
- ``reason_1d``: one field per reason code = ratings carrying that code per day;
- ``rating_centre_1d`` / ``ticket_centre_1d``: the same per centre (no counter,
  officer or device tag) for the province-wide panels.
Days are local days: ``time(1d, <offset>)`` puts bucket edges at 00:00 in the
deployment's (fixed-offset) time zone, so ISO weeks are unions of whole days.

Exactness: for ranges made of whole local days (the dashboards default to
``now-12w/w`` and ``now-30d/d``) the rollup counts equal the raw counts; the
tests prove it. A range that starts mid-day leaves that day out (its bucket is
stamped 00:00), one that ends mid-day counts the whole last day. The CQ recomputes the last ``resample_for`` every
``resample_every`` (default: 2 days every 5 min), so a rating that arrives later
than that (a terminal offline for days) needs ``hailong dashboards rollup backfill``.
Writes are idempotent: a recomputed day overwrites the same points.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from storage.influxql import InfluxQL
from storage.schema import Field, Measurement, Tag

from .settings import DashboardSettings

RATING_1D = Measurement.RATING_1D
TICKET_1D = Measurement.TICKET_1D
REASON_1D = Measurement.REASON_1D
# Centre-level copies without counter/officer/device: InfluxDB 1.x query time grows with the
# number of series touched, and a province-wide panel on rating_1d still touches one series
# per counter x officer x service x class (bench/RESULTS.md); these have ~50 per centre.
RATING_CENTRE_1D = Measurement.RATING_CENTRE_1D
TICKET_CENTRE_1D = Measurement.TICKET_CENTRE_1D
CENTRE_TAGS = ", ".join(f'"{t}"' for t in (Tag.PROVINCE, Tag.CENTRE, Tag.SERVICE, Tag.CLASS, Tag.WALKUP))


def day_offset(tz: str) -> str:
    """The GROUP BY time(1d, offset) that starts days at local midnight (fixed-offset zones only)."""
    zone = ZoneInfo(tz)
    offsets = {zone.utcoffset(datetime(2026, m, 1)) for m in (1, 4, 7, 10)}
    if len(offsets) != 1:
        raise ValueError(f"time zone {tz} has daylight saving time; daily rollups need a fixed offset")
    seconds = int(offsets.pop().total_seconds())  # type: ignore[union-attr]
    return f"{(-seconds) % 86400 // 3600}h"


def rollup_selects(s: DashboardSettings) -> dict[str, str]:
    """CQ name -> the SELECT ... INTO it runs (without a time condition)."""
    group = f"GROUP BY time(1d, {day_offset(s.timezone)}), *"
    day = f"GROUP BY time(1d, {day_offset(s.timezone)})"
    rating, ticket, n = Measurement.RATING, Measurement.TICKET, Field.N
    score, tno = Field.SCORE, Field.TICKET
    out = {
        "hl_rating_1d": f'SELECT count("{score}") AS "{n}" INTO "{RATING_1D}" FROM "{rating}" {group}',
        "hl_ticket_1d": f'SELECT count("{tno}") AS "{n}" INTO "{TICKET_1D}" FROM "{ticket}" {group}',
        "hl_rating_centre_1d": f'SELECT count("{score}") AS "{n}" INTO "{RATING_CENTRE_1D}" FROM "{rating}" '
                               f"{day}, {CENTRE_TAGS}",
        "hl_ticket_centre_1d": f'SELECT count("{tno}") AS "{n}" INTO "{TICKET_CENTRE_1D}" FROM "{ticket}" '
                               f'{day}, "{Tag.PROVINCE}", "{Tag.CENTRE}", "{Tag.SERVICE}"',
    }
    for code in s.reasons:
        out[f"hl_reason_1d_{code}"] = (f'SELECT count("{score}") AS "{code}" INTO "{REASON_1D}" FROM "{rating}" '
                                       f'WHERE "{Field.REASONS}" =~ /(^|,){code}(,|$)/ {group}')
    return out


def _with_time(select: str, start_ms: int, end_ms: int) -> str:
    cond = f"time >= {start_ms}ms AND time < {end_ms}ms"
    if " WHERE " in select:
        return select.replace(" WHERE ", f" WHERE {cond} AND ", 1)
    return select.replace(" GROUP BY ", f" WHERE {cond} GROUP BY ", 1)


def install(db: InfluxQL, s: DashboardSettings, every: str = "5m", resample_for: str = "2d") -> list[str]:
    """(Re)create the continuous queries; returns their names."""
    existing = installed(db)
    for name, select in rollup_selects(s).items():
        if name in existing:  # a CQ cannot be altered: drop and recreate (same definition = same result)
            db.query(f'DROP CONTINUOUS QUERY "{name}" ON "{db.database}"')
        db.query(f'CREATE CONTINUOUS QUERY "{name}" ON "{db.database}" '
                 f"RESAMPLE EVERY {every} FOR {resample_for} BEGIN {select} END")
    return list(rollup_selects(s))


def backfill(db: InfluxQL, s: DashboardSettings, start: datetime, end: datetime, chunk_days: int = 7) -> int:
    """Recompute the rollups for [start, end) (rounded out to local days); returns points written."""
    zone = ZoneInfo(s.timezone)
    day = start.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    written = 0
    while day < end:
        nxt = min(day + timedelta(days=chunk_days), end.astimezone(zone) + timedelta(days=1))
        nxt = nxt.replace(hour=0, minute=0, second=0, microsecond=0)
        for select in rollup_selects(s).values():
            q = _with_time(select, int(day.timestamp() * 1000), int(nxt.timestamp() * 1000))
            for series in db.query(q):
                written += sum(int(v[1]) for v in series.values)
        day = nxt
    return written


def installed(db: InfluxQL) -> set[str]:
    """Names of the continuous queries of this database (SHOW lists every database's)."""
    return {str(row["name"]) for series in db.query("SHOW CONTINUOUS QUERIES") if series.name == db.database
            for row in series.rows()}
