"""The hand count of the field scenario: what each panel must show, from what was published.

Works on the scenario's legal records (tests/dashboards/scenario.py: one rating per ticket
instance, the QMS's officer and service, a recall served once), never on anything read
back from InfluxDB. A selection maps a variable to its chosen values (``None`` or absent:
All, which in Grafana is ``.*`` and so also matches an empty tag, e.g. a walk-up's service).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .scenario import LegalRating, LegalServed, Refused, Scenario, StatusSent
from .seed import TZ, ms
from .truth import Ratio

Selection = dict[str, list[str] | None]
Record = LegalRating | LegalServed


def chosen(rec: Record, sel: Selection) -> bool:
    return all(v is None or getattr(rec, k) in v for k, v in sel.items())


def within(time_ns: int, start_ms: int, end_ms: int) -> bool:
    """Grafana's $timeFilter: time >= start ms and time <= end ms (inclusive, ns precision)."""
    return start_ms * 1_000_000 <= time_ns <= end_ms * 1_000_000


def local(time_ns: int) -> datetime:
    return datetime.fromtimestamp(time_ns / 1e9, TZ)


def monday_ms(time_ns: int) -> int:
    d = local(time_ns).date()
    first = d - timedelta(days=d.weekday())
    return ms(datetime(first.year, first.month, first.day, tzinfo=TZ))


def day_start_ms(time_ns: int) -> int:
    d: date = local(time_ns).date()
    return ms(datetime(d.year, d.month, d.day, tzinfo=TZ))


@dataclass
class HandCount:
    ratings: list[LegalRating]
    served: list[LegalServed]
    statuses: list[StatusSent]
    refused: list[Refused]

    @classmethod
    def of(cls, sc: Scenario) -> HandCount:
        return cls(sc.legal_ratings(), sc.legal_served(), sc.statuses, sc.refused())

    def rated(self, start: int, end: int, sel: Selection, walkups: bool = False) -> list[LegalRating]:
        return [r for r in self.ratings if within(r.time_ns, start, end) and chosen(r, sel)
                and (walkups or not r.walkup)]

    def ratios(self, start: int, end: int, sel: Selection, group: tuple[str, ...] = ()) -> dict[tuple[str, ...], Ratio]:
        """group -> (rated, satisfied, served); walk-ups never count."""
        rated: Counter[tuple[str, ...]] = Counter()
        sat: Counter[tuple[str, ...]] = Counter()
        served: Counter[tuple[str, ...]] = Counter()
        for r in self.rated(start, end, sel):
            k = tuple(getattr(r, g) for g in group)
            rated[k] += 1
            sat[k] += r.cls != "not_satisfied"
        for t in self.served:
            if within(t.time_ns, start, end) and chosen(t, sel):
                served[tuple(getattr(t, g) for g in group)] += 1
        return {k: Ratio(rated[k], sat[k], served[k]) for k in rated | served}

    def by_class(self, start: int, end: int, sel: Selection) -> dict[str, int]:
        return dict(Counter(r.cls for r in self.rated(start, end, sel)))

    def reasons(self, start: int, end: int, sel: Selection, not_satisfied: bool = True) -> dict[str, int]:
        return dict(Counter(c for r in self.rated(start, end, sel) if (r.cls == "not_satisfied") == not_satisfied
                            for c in r.reasons))

    def weekly(self, start: int, end: int, sel: Selection) -> dict[int, Ratio]:
        """Local ISO week (its Monday 00:00 in ms) -> counts, for the weeks with a rated ticket."""
        out: dict[int, Ratio] = {}
        for week in sorted({monday_ms(r.time_ns) for r in self.rated(start, end, sel)}):
            rs = [r for r in self.rated(start, end, sel) if monday_ms(r.time_ns) == week]
            out[week] = Ratio(len(rs), sum(r.cls != "not_satisfied" for r in rs), 0)
        return out

    def heatmap(self, start: int, end: int, sel: Selection) -> dict[tuple[str, int], int]:
        """(hour "HH", ISO weekday) -> rated tickets, in the centre's time zone."""
        return dict(Counter((f"{local(r.time_ns).hour:02d}", local(r.time_ns).isoweekday())
                            for r in self.rated(start, end, sel)))

    def live_not_satisfied(self, start: int, end: int, sel: Selection, limit: int = 100) -> list[LegalRating]:
        rs = [r for r in self.rated(start, end, sel, walkups=True) if r.cls == "not_satisfied"]
        return sorted(rs, key=lambda r: r.time_ns, reverse=True)[:limit]

    def per_counter(self, start: int, end: int, sel: Selection) -> dict[tuple[str, str], tuple[int, int]]:
        """(centre, counter) -> (all ratings, walk-ups)."""
        every = Counter((r.centre, r.counter) for r in self.rated(start, end, sel, walkups=True))
        walk = Counter((r.centre, r.counter) for r in self.rated(start, end, sel, walkups=True) if r.walkup)
        return {k: (n, walk[k]) for k, n in every.items()}

    def fast(self, start: int, end: int, sel: Selection,
             limit_ms: int = 1000) -> dict[tuple[str, ...], tuple[int, int]]:
        """(centre, counter, officer) -> (rated, rated within ``limit_ms`` of the close)."""
        rs = self.rated(start, end, sel)
        n = Counter((r.centre, r.counter, r.officer) for r in rs)
        quick = Counter((r.centre, r.counter, r.officer) for r in rs if (r.response_ms or 0) < limit_ms)
        return {k: (v, quick[k]) for k, v in n.items()}

    def disagreements(self, start: int, end: int, sel: Selection) -> dict[tuple[str, ...], tuple[int, int]]:
        """(centre, counter, credited officer) -> (rated, rated where the terminal named someone else), >= 1."""
        rs = self.rated(start, end, sel)
        n = Counter((r.centre, r.counter, r.officer) for r in rs)
        other = Counter((r.centre, r.counter, r.officer) for r in rs if r.terminal_officer)
        return {k: (n[k], v) for k, v in other.items()}

    def top_windows(self, start: int, end: int, sel: Selection, length: int) -> dict[tuple[str, str], int]:
        """(centre, officer tag) -> windows of ``length`` consecutive top scores (walk-ups included)."""
        runs: dict[tuple[str, str], list[bool]] = {}
        for r in sorted(self.rated(start, end, sel, walkups=True), key=lambda r: r.time_ns):
            runs.setdefault((r.centre, r.officer), []).append(r.score == r.scale)
        out = {}
        for k, top in runs.items():
            windows = sum(all(top[i - length + 1:i + 1]) for i in range(length - 1, len(top)))
            if windows:
                out[k] = windows
        return out

    def ticket_rejections(self, start: int, end: int, sel: Selection,
                          reasons: tuple[str, ...] = ("duplicate_ticket", "unknown_ticket"),
                          ) -> dict[tuple[str, str, str, str], int]:
        """(centre, counter, device, reason) -> refused events, at their arrival, for a chosen centre/counter."""
        return dict(Counter((r.centre, r.counter, r.device, r.reason) for r in self.refused
                            if r.reason in reasons and within(r.at_ms * 1_000_000, start, end)
                            and all(v is None or getattr(r, k) in v for k, v in sel.items()
                                    if k in ("centre", "counter"))))

    def devices_online(self, start: int, end: int, centres: list[str] | None) -> dict[str, bool]:
        last: dict[str, StatusSent] = {}
        for st in sorted(self.statuses, key=lambda s: s.at_ms):
            if start <= st.at_ms <= end and (centres is None or st.status.centre in centres):
                last[st.status.device] = st
        return {d: st.status.online for d, st in last.items()}
