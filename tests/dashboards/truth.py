"""Expected dashboard numbers computed in plain Python from the seed (never via InfluxDB)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .seed import Rating, Seed, Selection, Status, in_range, selected


@dataclass(frozen=True)
class Ratio:
    rated: int
    satisfied: int
    served: int

    @property
    def not_satisfied(self) -> int:
        return self.rated - self.satisfied

    @property
    def ratio(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    @property
    def response(self) -> float | None:
        return self.rated / self.served if self.served else None


def ratings(seed: Seed, start_ms: int, end_ms: int, sel: Selection, walkups: bool = False) -> list[Rating]:
    return [r for r in seed.ratings if in_range(r.time_ns, start_ms, end_ms) and selected(r, sel)
            and (walkups or not r.walkup)]


def ratios(seed: Seed, start_ms: int, end_ms: int, sel: Selection,
           group: tuple[str, ...]) -> dict[tuple[str, ...], Ratio]:
    rated: Counter[tuple[str, ...]] = Counter()
    sat: Counter[tuple[str, ...]] = Counter()
    served: Counter[tuple[str, ...]] = Counter()
    for r in ratings(seed, start_ms, end_ms, sel):
        k = tuple(r.tag(g) for g in group)
        rated[k] += 1
        sat[k] += r.cls != "not_satisfied"
    for t in seed.tickets:
        if in_range(t.time_ns, start_ms, end_ms) and selected(t, sel):
            served[tuple(t.tag(g) for g in group)] += 1
    return {k: Ratio(rated[k], sat[k], served[k]) for k in rated | served}


def shared_ranks(values: dict[str, float]) -> dict[str, int]:
    """The one ranking rule: 1 + the number with a strictly better value (1, 1, 3)."""
    return {k: 1 + sum(other > v for other in values.values()) for k, v in values.items()}


def top_windows(seed: Seed, start_ms: int, end_ms: int, sel: Selection, n: int) -> dict[tuple[str, str], int]:
    """Windows of ``n`` consecutive ratings (walk-ups included) of one officer that are all top scores."""
    by_counter: dict[tuple[str, str], list[Rating]] = defaultdict(list)
    for r in sorted(ratings(seed, start_ms, end_ms, sel, walkups=True), key=lambda r: r.time_ns):
        by_counter[(r.centre, r.officer)].append(r)
    out = {}
    for k, rs in by_counter.items():
        top = [r.score == r.scale for r in rs]
        windows = sum(all(top[i - n + 1:i + 1]) for i in range(n - 1, len(top)))
        if windows:
            out[k] = windows
    return out


def last_status(seed: Seed, start_ms: int, end_ms: int, centres: list[str] | None) -> dict[tuple[str, str], Status]:
    out: dict[tuple[str, str], Status] = {}
    for st in sorted(seed.statuses, key=lambda s: s.time_ns):
        if in_range(st.time_ns, start_ms, end_ms) and (centres is None or st.centre in centres):
            out[(st.centre, st.device)] = st
    return out
