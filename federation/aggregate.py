"""One centre's service day, counted from the province's daily rollups.

The counts are those the province's own dashboards show: rated tickets and their legal
classes from ``rating_centre_1d`` (walk-ups apart), served tickets from ``ticket_centre_1d``
(dashboards/rollup.py). Summing them per province and dividing therefore gives the
province's own ratio exactly -- which averaging per-centre ratios would not.

Every registered centre gets a row for every day of the window, zero days included: the
nation must tell "nothing happened" from "nothing arrived".
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from broker.contract import SatisfactionClass
from dashboards.rollup import day_offset
from storage.influxql import InfluxQL
from storage.schema import WALKUP_TRUE, Field, Measurement, Tag


@dataclass
class DayCounts:
    """The counts of one centre's day (the body of a CentreDay)."""

    rated: int = 0
    not_satisfied: int = 0
    satisfied: int = 0
    very_satisfied: int = 0
    walkups: int = 0
    served: int = 0

    def as_kwargs(self) -> dict[str, int]:
        return dict(rated=self.rated, not_satisfied=self.not_satisfied, satisfied=self.satisfied,
                    very_satisfied=self.very_satisfied, walkups=self.walkups, served=self.served)


@dataclass(frozen=True)
class Window:
    """The local days [first, last] of a publish run, in the deployment's time zone."""

    first: dt.date
    last: dt.date
    tz: str = "Asia/Ho_Chi_Minh"
    days: tuple[dt.date, ...] = field(init=False)

    def __post_init__(self) -> None:
        n = (self.last - self.first).days + 1
        if n < 1:
            raise ValueError(f"window {self.first}..{self.last} is empty")
        object.__setattr__(self, "days", tuple(self.first + dt.timedelta(days=i) for i in range(n)))

    @classmethod
    def ending_today(cls, days: int, tz: str, now: dt.datetime | None = None) -> Window:
        today = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(tz)).date()
        return cls(today - dt.timedelta(days=days - 1), today, tz)

    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), ZoneInfo(self.tz))

    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), ZoneInfo(self.tz))

    def day_of(self, epoch_ms: int) -> dt.date:
        return dt.datetime.fromtimestamp(epoch_ms / 1000, ZoneInfo(self.tz)).date()


_CLASS_FIELD = {SatisfactionClass.NOT_SATISFIED.value: "not_satisfied",
                SatisfactionClass.SATISFIED.value: "satisfied",
                SatisfactionClass.VERY_SATISFIED.value: "very_satisfied"}


def count_days(db: InfluxQL, centres: Iterable[str], window: Window) -> dict[tuple[str, dt.date], DayCounts]:
    """(centre, day) -> counts for every centre and every day of the window (zeros included)."""
    wanted = sorted(set(centres))
    out = {(c, d): DayCounts() for c in wanted for d in window.days}
    if not wanted:
        return out
    cond = f"time >= {int(window.start().timestamp() * 1000)}ms AND time < {int(window.end().timestamp() * 1000)}ms"
    group = f"GROUP BY time(1d, {day_offset(window.tz)}), \"{Tag.CENTRE}\""
    ratings = (f'SELECT sum("{Field.N}") AS "n" FROM "{Measurement.RATING_CENTRE_1D}" WHERE {cond} '
               f'{group}, "{Tag.CLASS}", "{Tag.WALKUP}" fill(none)')
    served = f'SELECT sum("{Field.N}") AS "n" FROM "{Measurement.TICKET_CENTRE_1D}" WHERE {cond} {group} fill(none)'
    per: dict[tuple[str, dt.date], DayCounts] = defaultdict(DayCounts)
    for series in db.query(ratings):
        centre, walkup = series.tags.get(Tag.CENTRE, ""), series.tags.get(Tag.WALKUP, "")
        kind = _CLASS_FIELD.get(series.tags.get(Tag.CLASS, ""))
        for t, n in series.values:
            counts = per[(centre, window.day_of(int(t)))]
            if walkup == WALKUP_TRUE:
                counts.walkups += int(n)
            elif kind is not None:
                counts.rated += int(n)
                setattr(counts, kind, getattr(counts, kind) + int(n))
    for series in db.query(served):
        centre = series.tags.get(Tag.CENTRE, "")
        for t, n in series.values:
            per[(centre, window.day_of(int(t)))].served += int(n)
    for key, counts in per.items():
        if key in out:  # centres of the registry only, days of the window only
            out[key] = counts
    return out
