"""InfluxQL for the panels, alerts and reports (InfluxDB 1.x, 2.x via DBRP, 3.x).

InfluxQL cannot divide two conditional counts, so every ratio is two or three
queries joined by Grafana's ``merge`` transformation and finished with
``calculateField``. The satisfied count is queried (not the "Không hài lòng"
count) because a query that matches nothing returns no column at all, and a
centre with zero complaints is common while one with zero satisfied is not.
"""

from __future__ import annotations

from .grafana import Panel, PanelKind, Target, Transform, binary, merge, organize, sort_by
from .rollup import RATING_1D, RATING_CENTRE_1D, REASON_1D, TICKET_1D, TICKET_CENTRE_1D

# The tags of `rating` and `ticket` that template variables filter on.
RATING_KEYS: tuple[str, ...] = ("province", "centre", "counter", "officer", "service")
CENTRE_KEYS: tuple[str, ...] = ("province", "centre", "service")  # whole centre: no counter/officer filter

# Column names produced by the queries and calculations below.
RATED = "rated"  # rated tickets: non-walk-up ratings
SATISFIED = "satisfied"  # rated tickets not "Không hài lòng"
NOT_SATISFIED = "not_satisfied"
SERVED = "served"  # closed tickets (ticket points)
RATIO = "ratio"  # (rated - Không hài lòng) / rated
RESPONSE = "response_rate"  # rated / served

LABELS: dict[str, str] = {
    RATED: "Đã đánh giá (n)", SATISFIED: "Hài lòng trở lên", NOT_SATISFIED: "Không hài lòng",
    SERVED: "Vé đã phục vụ", RATIO: "Tỷ lệ hài lòng", RESPONSE: "Tỷ lệ phản hồi",
    "counter": "Quầy", "officer": "Cán bộ", "service": "Lĩnh vực", "centre": "Trung tâm", "class": "Mức",
}


def tag_filters(keys: tuple[str, ...]) -> str:
    """``"k" =~ /^$k$/`` for each key; with All selected Grafana substitutes ``.*``."""
    return "".join(f' AND "{k}" =~ /^${k}$/' for k in keys)


def group_clause(group: tuple[str, ...], time: str = "", tz: str = "", fill: str = "") -> str:
    parts = ([f"time({time})"] if time else []) + [f'"{g}"' for g in group]
    if not parts:
        return ""
    out = " GROUP BY " + ", ".join(parts)
    if fill:
        out += f" fill({fill})"
    if tz:
        out += f" tz('{tz}')"
    return out


def count_query(measurement: str, field: str, alias: str, keys: tuple[str, ...], where: str = "",
                group: tuple[str, ...] = (), time: str = "", tz: str = "", fill: str = "", agg: str = "count") -> str:
    extra = f" AND {where}" if where else ""
    return (f'SELECT {agg}("{field}") AS "{alias}" FROM "{measurement}" WHERE $timeFilter{extra}'
            f"{tag_filters(keys)}{group_clause(group, time, tz, fill)}")


def _centre_level(keys: tuple[str, ...], group: tuple[str, ...]) -> bool:
    return not {"counter", "officer", "device"} & (set(keys) | set(group))


def rated_query(keys: tuple[str, ...], group: tuple[str, ...] = (), alias: str = RATED, where: str = "",
                time: str = "", tz: str = "", rollup: bool = False) -> str:
    """Rated tickets; with ``rollup`` summed from the daily counts (the centre-level ones when possible)."""
    cond = "\"walkup\" = 'false'" + (f" AND {where}" if where else "")
    fill = "none" if time else ""
    if rollup:
        table = RATING_CENTRE_1D if _centre_level(keys, group) else RATING_1D
        return count_query(table, "n", alias, keys, cond, group, time, tz, fill, agg="sum")
    return count_query("rating", "score", alias, keys, cond, group, time, tz, fill)


def satisfied_query(keys: tuple[str, ...], group: tuple[str, ...] = (), alias: str = SATISFIED,
                    time: str = "", tz: str = "", rollup: bool = False) -> str:
    return rated_query(keys, group, alias, "\"class\" != 'not_satisfied'", time, tz, rollup)


def served_query(keys: tuple[str, ...], group: tuple[str, ...] = (), rollup: bool = False) -> str:
    if rollup:
        table = TICKET_CENTRE_1D if _centre_level(keys, group) else TICKET_1D
        return count_query(table, "n", SERVED, keys, "", group, agg="sum")
    return count_query("ticket", "ticket", SERVED, keys, "", group)


def ratio_targets(keys: tuple[str, ...], group: tuple[str, ...] = (), served: bool = False,
                  rollup: bool = False) -> tuple[Target, ...]:
    targets = [Target("A", rated_query(keys, group, rollup=rollup)),
               Target("B", satisfied_query(keys, group, rollup=rollup))]
    if served:
        targets.append(Target("C", served_query(keys, group, rollup)))
    return tuple(targets)


def ratio_transforms(served: bool = False) -> tuple[Transform, ...]:
    # Grafana evaluates with JavaScript numbers: a row missing "satisfied" (null)
    # counts as 0 in the subtraction and the division, which is the right answer.
    out = [merge(), binary(SATISFIED, "/", RATED, RATIO), binary(RATED, "-", SATISFIED, NOT_SATISFIED)]
    if served:
        out.append(binary(RATED, "/", SERVED, RESPONSE))
    return tuple(out)


def ratio_stat(key: str, title: str, description: str, keys: tuple[str, ...], time_from: str = "",
               response: bool = False, rollup: bool = False) -> Panel:
    """A single number: satisfaction ratio, or response rate when ``response``."""
    return Panel(key, "stat", title, description, ratio_targets(keys, served=response, rollup=rollup),
                 ratio_transforms(served=response), unit="percentunit", decimals=1,
                 value_field=RESPONSE if response else RATIO, time_from=time_from, width=6, height=5)


def ratio_table(key: str, title: str, description: str, keys: tuple[str, ...], group: tuple[str, ...],
                kind: PanelKind = "table", extra: tuple[Transform, ...] = (), rollup: bool = False) -> Panel:
    """Rated, satisfied, not satisfied, served, ratio and response rate per ``group``, best first."""
    return Panel(key, kind, title, description, ratio_targets(keys, group, served=True, rollup=rollup),
                 (*ratio_transforms(served=True), *extra, sort_by(RATIO),
                  organize({k: v for k, v in LABELS.items()})), width=12, height=9)


def reason_query(code: str, keys: tuple[str, ...], rollup: bool = False) -> str:
    if rollup:  # reason_1d has one per-day count field per reason code
        return count_query(REASON_1D, code, code, keys, "\"walkup\" = 'false'", agg="sum")
    # reasons is a comma list in one string field: match the code as a whole item
    return rated_query(keys, alias=code, where=f'"reasons" =~ /(^|,){code}(,|$)/')
