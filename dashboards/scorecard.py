"""Weekly officer scorecard numbers for one centre, queried from InfluxDB (InfluxQL).

The same definitions as the dashboards: rated tickets are non-walk-up ratings,
ratio = (rated - Không hài lòng) / rated, response rate = rated / served
(``ticket`` points); per channel, rated at the counter or from the web link (``device`` = web), each over
the same served tickets (a ticket is rated once across channels, so the two add up to the whole). Officers
are ranked within the centre only when they have at least ``min_sample`` rated tickets; equal ratios share
a rank (1, 2, 2, 4).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from broker.contract import WEB_DEVICE, validate_id
from storage.influxql import InfluxQL
from storage.schema import NOT_SATISFIED, WALKUP_FALSE, Field, Measurement, Tag

from .queries import CLASS_TEXT


class NoScorecardData(ValueError):
    """The centre has no rated or served ticket in that week (or is not a centre at all)."""

CLASSES = ("very_satisfied", "satisfied", "not_satisfied")
CLASS_LABELS = dict(CLASS_TEXT)  # the dashboards' wording


@dataclass(frozen=True)
class IsoWeek:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        m = re.fullmatch(r"(\d{4})-W(\d{2})", text.strip())
        if not m:
            raise ValueError(f"week {text!r} is not YYYY-Www, e.g. 2026-W47")
        year, week = int(m.group(1)), int(m.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise ValueError(f"{year} has no ISO week {week}") from None
        return cls(year, week)

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    def dates(self) -> tuple[date, date]:
        """Monday and Sunday of the week."""
        monday = date.fromisocalendar(self.year, self.week, 1)
        return monday, monday + timedelta(days=6)

    def label(self) -> str:
        """'2026-W47 (16/11/2026 – 22/11/2026)'."""
        first, last = self.dates()
        return f"{self} ({first:%d/%m/%Y} – {last:%d/%m/%Y})"

    def start(self, tz: str) -> datetime:
        d = date.fromisocalendar(self.year, self.week, 1)
        return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))

    def shifted(self, weeks: int) -> IsoWeek:
        d = date.fromisocalendar(self.year, self.week, 1) + timedelta(weeks=weeks)
        y, w, _ = d.isocalendar()
        return IsoWeek(y, w)


@dataclass
class OfficerWeek:
    officer: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    served: int = 0
    name: str = ""  # from the fleet registry; the id when the registry does not know the officer
    reasons: Counter[str] = field(default_factory=Counter)  # given with "Không hài lòng" ratings
    reasons_satisfied: Counter[str] = field(default_factory=Counter)  # given with satisfied ones (incl. Bình thường)
    trend: list[tuple[str, float | None, int]] = field(default_factory=list)  # (week, ratio, n), oldest first
    rank: int | None = None
    web: int = 0  # rated tickets rated from the web link (device "web"); the rest were rated at the counter

    @property
    def rated(self) -> int:
        return sum(self.counts.values())

    @property
    def counter(self) -> int:
        """Rated at the counter (touch screen or buttons): one rating per ticket, so rated = counter + web."""
        return self.rated - self.web

    @property
    def web_share(self) -> float | None:
        return self.web / self.rated if self.rated else None

    @property
    def counter_response(self) -> float | None:
        return self.counter / self.served if self.served else None

    @property
    def web_response(self) -> float | None:
        return self.web / self.served if self.served else None

    @property
    def ratio(self) -> float | None:
        return (self.rated - self.counts["not_satisfied"]) / self.rated if self.rated else None

    @property
    def response_rate(self) -> float | None:
        return self.rated / self.served if self.served else None


@dataclass
class CentreWeek:
    centre: str
    week: IsoWeek
    min_sample: int
    officers: list[OfficerWeek]
    centre_ratio: float | None
    centre_rated: int
    centre_name: str = ""
    centre_served: int = 0
    # the web ratings' delay after their ticket's close, seconds: median and 90th percentile (None: no web rating)
    web_delay_median_s: float | None = None
    web_delay_p90_s: float | None = None

    @property
    def centre_web(self) -> int:
        return sum(o.web for o in self.officers)

    @property
    def ranked(self) -> int:
        return sum(1 for o in self.officers if o.rank is not None)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _window(start: datetime, end: datetime) -> str:
    return f"time >= {_ms(start)}ms AND time < {_ms(end)}ms"


def shared_rank(officers: list[OfficerWeek], min_sample: int) -> None:
    """The one ranking rule (as the dashboards): 1 + officers with a strictly better ratio (1, 1, 3),
    among officers with at least ``min_sample`` rated tickets; the others get no rank."""
    eligible = [o for o in officers if o.rated >= min_sample and o.ratio is not None]
    for o in officers:
        o.rank = (1 + sum(1 for p in eligible if (p.ratio or 0.0) > (o.ratio or 0.0))) if o in eligible else None


def weekly_scorecard(db: InfluxQL, centre: str, week: IsoWeek, tz: str, min_sample: int,
                     weeks_back: int = 8, names: dict[str, str] | None = None, centre_name: str = "") -> CentreWeek:
    """The week's numbers; raises :class:`NoScorecardData` when nothing was rated or served."""
    validate_id(centre, "centre")  # it goes into a query: only [a-z0-9-]
    start = week.start(tz)
    end = week.shifted(1).start(tz)
    where = f"{_window(start, end)} AND \"{Tag.CENTRE}\" = '{centre}'"
    rated = f"{where} AND \"{Tag.WALKUP}\" = 'false'"
    officers: dict[str, OfficerWeek] = {}
    names = names or {}

    def get(officer: str) -> OfficerWeek:
        return officers.setdefault(officer, OfficerWeek(officer, name=names.get(officer, officer)))

    rating, ticket = Measurement.RATING, Measurement.TICKET
    for row in db.rows(f'SELECT count("{Field.SCORE}") AS n FROM "{rating}" WHERE {rated} '
                       f'GROUP BY "{Tag.OFFICER}", "{Tag.CLASS}"'):
        get(row[Tag.OFFICER]).counts[row[Tag.CLASS]] = int(row["n"])
    for row in db.rows(f'SELECT count("{Field.TICKET}") AS n FROM "{ticket}" WHERE {where} GROUP BY "{Tag.OFFICER}"'):
        get(row[Tag.OFFICER]).served = int(row["n"])
    for row in db.rows(f'SELECT "{Field.REASONS}" FROM "{rating}" WHERE {rated} AND "{Field.REASONS}" != \'\' '
                       f'GROUP BY "{Tag.OFFICER}", "{Tag.CLASS}"'):
        o = get(row[Tag.OFFICER])
        bucket = o.reasons if row[Tag.CLASS] == NOT_SATISFIED else o.reasons_satisfied
        bucket.update(c for c in str(row[Field.REASONS]).split(",") if c)
    web = f"{rated} AND \"{Tag.DEVICE}\" = '{WEB_DEVICE}'"
    for row in db.rows(f'SELECT count("{Field.SCORE}") AS n FROM "{rating}" WHERE {web} GROUP BY "{Tag.OFFICER}"'):
        get(row[Tag.OFFICER]).web = int(row["n"])
    if not officers:
        raise NoScorecardData(f"no rated or served ticket for centre {centre!r} in {week.label()}: "
                              "check the centre id and the week")
    _trend(db, centre, week, tz, weeks_back, officers)
    shared_rank(list(officers.values()), min_sample)
    n = sum(o.rated for o in officers.values())
    ns = sum(o.counts[NOT_SATISFIED] for o in officers.values())
    ordered = sorted(officers.values(), key=lambda o: (o.rank is None, o.rank or 0, o.name, o.officer))
    card = CentreWeek(centre, week, min_sample, ordered, (n - ns) / n if n else None, n,
                      centre_name or centre, sum(o.served for o in officers.values()))
    ms = Field.RESPONSE_MS  # the same median and nearest-rank 90th percentile as the dashboards' stat
    for row in db.rows(f'SELECT median("{ms}") / 1000 AS m, percentile("{ms}", 90) / 1000 AS p FROM "{rating}" '
                       f"WHERE {web}"):
        card.web_delay_median_s, card.web_delay_p90_s = float(row["m"]), float(row["p"])
    return card


def _trend(db: InfluxQL, centre: str, week: IsoWeek, tz: str, weeks_back: int,
           officers: dict[str, OfficerWeek]) -> None:
    """Weekly ratio of each officer over the previous ``weeks_back`` weeks and this one."""
    weeks = [week.shifted(-i) for i in range(weeks_back, -1, -1)]
    first, end = weeks[0].start(tz), week.shifted(1).start(tz)
    # ISO weeks: InfluxDB's 1w buckets start on Thursday (the epoch); +4d and the zone make them Monday 00:00 local
    q = (f'SELECT count("{Field.SCORE}") AS n FROM "{Measurement.RATING}" WHERE {_window(first, end)} '
         f"AND \"{Tag.CENTRE}\" = '{centre}' AND \"{Tag.WALKUP}\" = '{WALKUP_FALSE}' "
         f'GROUP BY time(1w, 4d), "{Tag.OFFICER}", "{Tag.CLASS}" fill(none) tz(\'{tz}\')')
    per: dict[tuple[str, int], Counter[str]] = {}
    for row in db.rows(q):
        per.setdefault((row[Tag.OFFICER], int(row["time"])), Counter())[row[Tag.CLASS]] += int(row["n"])
    for o in officers.values():
        for w in weeks:
            c = per.get((o.officer, _ms(w.start(tz))), Counter())
            n = sum(c.values())
            o.trend.append((str(w), (n - c["not_satisfied"]) / n if n else None, n))
