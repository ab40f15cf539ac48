"""InfluxQL for the panels, alerts and reports (InfluxDB 1.x, 2.x via DBRP, 3.x).

InfluxQL cannot divide two conditional counts, so every ratio is two or three
queries joined by Grafana's ``merge`` transformation and finished with
``calculateField``. A conditional count that matches nothing returns no row, and
Grafana's merge then leaves that cell *undefined* (MutableDataFrame.add pushes
MISSING_VALUE = undefined), which JavaScript arithmetic turns into NaN: a counter
with no satisfied rating would show NaN instead of 0 %. So each count is queried
under a ``*_q`` alias and turned into its shown column by a ``reduceRow`` sum
(calculateField mode reduceRow: doStandardCalcs starts ``sum`` at 0 and adds only
values that are not null/undefined), which yields 0 for a missing cell. The dashboard
tests run these transformations through Grafana's own @grafana/data (tests/dashboards/grafana_js).

Every measurement, tag and field name comes from storage/schema.py.
"""

from __future__ import annotations

from storage.schema import NOT_SATISFIED as NOT_SATISFIED_CLASS
from storage.schema import WALKUP_FALSE, Field, Measurement, Tag

from .grafana import (
    Panel,
    PanelKind,
    Target,
    Transform,
    binary,
    filter_at_least,
    group_by,
    merge,
    organize,
    reduce_row,
    row_index,
    sort_by,
)

# The tags of `rating` and `ticket` that template variables filter on.
RATING_KEYS: tuple[str, ...] = (Tag.PROVINCE, Tag.CENTRE, Tag.COUNTER, Tag.OFFICER, Tag.SERVICE)
CENTRE_KEYS: tuple[str, ...] = (Tag.PROVINCE, Tag.CENTRE, Tag.SERVICE)  # whole centre: no counter/officer filter

# Column names produced by the queries and calculations below.
RATED = "rated"  # rated tickets: non-walk-up ratings
SATISFIED = "satisfied"  # rated tickets not "Không hài lòng"
NOT_SATISFIED = "not_satisfied"
SERVED = "served"  # closed tickets (ticket points)
RATIO = "ratio"  # (rated - Không hài lòng) / rated
RESPONSE = "response_rate"  # rated / served
RANK = "rank"
RAW = "_q"  # suffix of the query aliases; the shown column is their null-safe sum


def raw(column: str) -> str:
    return column + RAW


LABELS: dict[str, str] = {
    RATED: "Đã đánh giá (n)", SATISFIED: "Hài lòng trở lên", NOT_SATISFIED: "Không hài lòng",
    SERVED: "Vé đã phục vụ", RATIO: "Tỷ lệ hài lòng", RESPONSE: "Tỷ lệ phản hồi", RANK: "Hạng",
    Tag.PROVINCE: "Tỉnh", Tag.COUNTER: "Quầy", Tag.OFFICER: "Cán bộ", Tag.SERVICE: "Lĩnh vực", Tag.CENTRE: "Trung tâm",
    Tag.CLASS: "Mức",
}

# the legal classes as people read them ("Bình thường" is counted as satisfied), best first
CLASS_TEXT: tuple[tuple[str, str], ...] = (("very_satisfied", "Rất hài lòng"),
                                           ("satisfied", "Hài lòng (gồm Bình thường)"),
                                           ("not_satisfied", "Không hài lòng"))

# a terminal's (or bridge's) last online state as a person reads it, never "true"/"false"
ONLINE_TEXT: tuple[tuple[str, str], ...] = (("true", "Trực tuyến"), ("false", "Ngoại tuyến"))

RANK_RULE = ("Ranking rule: shared rank (competition ranking 1, 1, 3): equal ratios share a rank and the next "
             "rank skips; only within one centre")


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
    return not {Tag.COUNTER, Tag.OFFICER, Tag.DEVICE} & (set(keys) | set(group))


NOT_WALKUP = f"\"{Tag.WALKUP}\" = '{WALKUP_FALSE}'"


def rated_query(keys: tuple[str, ...], group: tuple[str, ...] = (), alias: str = RATED, where: str = "",
                time: str = "", tz: str = "", rollup: bool = False) -> str:
    """Rated tickets; with ``rollup`` summed from the daily counts (the centre-level ones when possible)."""
    cond = NOT_WALKUP + (f" AND {where}" if where else "")
    fill = "none" if time else ""
    if rollup:
        table = Measurement.RATING_CENTRE_1D if _centre_level(keys, group) else Measurement.RATING_1D
        return count_query(table, Field.N, alias, keys, cond, group, time, tz, fill, agg="sum")
    return count_query(Measurement.RATING, Field.SCORE, alias, keys, cond, group, time, tz, fill)


def satisfied_query(keys: tuple[str, ...], group: tuple[str, ...] = (), alias: str = SATISFIED,
                    time: str = "", tz: str = "", rollup: bool = False) -> str:
    return rated_query(keys, group, alias, f"\"{Tag.CLASS}\" != '{NOT_SATISFIED_CLASS}'", time, tz, rollup)


def served_query(keys: tuple[str, ...], group: tuple[str, ...] = (), rollup: bool = False,
                 alias: str = SERVED) -> str:
    if rollup:
        table = Measurement.TICKET_CENTRE_1D if _centre_level(keys, group) else Measurement.TICKET_1D
        return count_query(table, Field.N, alias, keys, "", group, agg="sum")
    return count_query(Measurement.TICKET, Field.TICKET, alias, keys, "", group)


def ratio_targets(keys: tuple[str, ...], group: tuple[str, ...] = (), served: bool = False,
                  rollup: bool = False) -> tuple[Target, ...]:
    targets = [Target("A", rated_query(keys, group, alias=raw(RATED), rollup=rollup)),
               Target("B", satisfied_query(keys, group, alias=raw(SATISFIED), rollup=rollup))]
    if served:
        targets.append(Target("C", served_query(keys, group, rollup, alias=raw(SERVED))))
    return tuple(targets)


def null_safe(*columns: str) -> tuple[Transform, ...]:
    """``col = sum(col_q)`` per row: 0 where the query returned no row for that cell."""
    return tuple(reduce_row(raw(c), c) for c in columns)


def ratio_transforms(served: bool = False) -> tuple[Transform, ...]:
    out = [merge(), *null_safe(RATED, SATISFIED, *((SERVED,) if served else ())),
           binary(SATISFIED, "/", RATED, RATIO), binary(RATED, "-", SATISFIED, NOT_SATISFIED)]
    if served:
        out.append(binary(RATED, "/", SERVED, RESPONSE))
    return tuple(out)


HIDDEN = ("Time", raw(RATED), raw(SATISFIED), raw(SERVED))


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
                 (*ratio_transforms(served=True), *extra, sort_by(RATIO), organize(LABELS, exclude=HIDDEN)),
                 width=12, height=9, percent=(LABELS[RATIO], LABELS[RESPONSE]))


def shared_rank(label: str, min_sample: int = 0) -> tuple[Transform, ...]:
    """Rank rows by ratio with the shared-rank rule (1, 1, 3), after the minimum-sample filter.

    Grafana has no rank transformation. After sorting by ratio, the row index is the number
    of rows before this one; grouping the rows by ratio and taking the first index of each
    group gives the number of rows with a strictly better ratio, i.e. rank - 1 for every row
    of a tie. A tie is one line naming its members ("Hạng 1 — Lan, Bình": ``allValues`` of the
    names, which Grafana prints joined by ", "); its counts are the line's sums and its response
    rate is computed from them, so every number on the line is one number Grafana formats
    (an ``allValues`` of numbers would be printed as raw text, "0.5, 0.25").
    """
    return (*((filter_at_least(RATED, min_sample),) if min_sample else ()), sort_by(RATIO),
            row_index("rank0"),
            group_by((RATIO,), {"rank0": "first", label: "allValues", RATED: "sum", SERVED: "sum"}),
            binary("rank0 (first)", "+", "1", RANK),
            binary(f"{RATED} (sum)", "/", f"{SERVED} (sum)", RESPONSE),
            organize({RANK: LABELS[RANK], RATIO: LABELS[RATIO], f"{label} (allValues)": LABELS[label],
                      f"{RATED} (sum)": LABELS[RATED], f"{SERVED} (sum)": LABELS[SERVED],
                      RESPONSE: LABELS[RESPONSE]},
                     exclude=("rank0 (first)",),
                     order=(RANK, RATIO, f"{label} (allValues)", f"{RATED} (sum)", f"{SERVED} (sum)", RESPONSE)))


def ranking_table(key: str, title: str, description: str, keys: tuple[str, ...], label: str,
                  min_sample: int = 0, rollup: bool = False) -> Panel:
    """Rows of ``label`` ranked by satisfaction ratio with the shared-rank rule."""
    return Panel(key, "table", title, f"{description} {RANK_RULE}; a tie is one line: its n, served and response "
                 "rate are the line's totals.",
                 ratio_targets(keys, (label,), served=True, rollup=rollup),
                 (*ratio_transforms(served=True), *shared_rank(label, min_sample)), width=12, height=9,
                 percent=(LABELS[RATIO], LABELS[RESPONSE]))


def reason_query(code: str, keys: tuple[str, ...], rollup: bool = False, not_satisfied_only: bool = False) -> str:
    cls = f" AND \"{Tag.CLASS}\" = '{NOT_SATISFIED_CLASS}'" if not_satisfied_only else ""
    if rollup:  # reason_1d has one per-day count field per reason code
        return count_query(Measurement.REASON_1D, code, code, keys, NOT_WALKUP + cls, agg="sum")
    # reasons is a comma list in one string field: match the code as a whole item
    return rated_query(keys, alias=code, where=f'"{Field.REASONS}" =~ /(^|,){code}(,|$)/{cls}')
