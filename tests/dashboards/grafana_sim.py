"""What Grafana does between InfluxDB and the screen, re-done in Python for the tests.

Grafana cannot run here, so this module mimics the parts the dashboards use:
- the InfluxQL datasource's interpolation: $timeFilter, $__interval,
  $__interval_ms and template variables (multi-value -> ``(a|b)``, All -> allValue);
- panel relative time (``now/d``, ``now/w`` with weekStart monday);
- the table result format (Time, tag columns, value columns);
- the transformations used (merge, calculateField binary/index/reduceRow with
  JavaScript null/undefined arithmetic, sortBy, filterByValue, organize, formatTime,
  extractFields, groupBy, groupingToMatrix);
- alert rule evaluation (reduce last, threshold, math) per label set.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from storage.influxql import InfluxQL

Row = dict[str, Any]


class _Undefined:
    """JavaScript ``undefined``: what Grafana leaves in a cell no frame filled (not ``null``)."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


def is_missing(v: Any) -> bool:
    """``v == null`` in JavaScript: null or undefined."""
    return v is None or v is UNDEFINED


@dataclass
class Table:
    columns: list[str]
    rows: list[Row] = field(default_factory=list)

    def col(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int


def format_interval(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _regex_escape(v: str) -> str:
    # lodash escapeRegExp, as Grafana uses for InfluxQL regex values
    return re.sub(r"([\\^$.*+?()[\]{}|])", r"\\\1", v)


def variable_value(var: Row, selected: list[str] | None) -> str:
    """The text Grafana substitutes for one variable; ``None`` selects All."""
    if var["type"] == "constant":
        return str(var["query"])
    if selected is not None and len(selected) > 1 and not var.get("multi"):
        raise AssertionError(f"variable {var['name']} is single-valued: {selected} cannot be selected")
    if selected is None and not var.get("includeAll"):
        raise AssertionError(f"variable {var['name']} offers no All: select one value")
    if selected is None:
        return str(var.get("allValue") or ".*")
    if len(selected) == 1:
        return _regex_escape(selected[0])
    return "(" + "|".join(_regex_escape(v) for v in selected) + ")"


def interpolate(query: str, dashboard: Row, rng: TimeRange, selection: dict[str, list[str] | None],
                interval_ms: int = 60_000) -> str:
    q = query.replace("$timeFilter", f"time >= {rng.start_ms}ms and time <= {rng.end_ms}ms")
    q = q.replace("$__interval_ms", str(interval_ms)).replace("$__interval", format_interval(interval_ms))
    # longest names first so $centre does not eat the start of $centre_x
    for var in sorted(dashboard["templating"]["list"], key=lambda v: -len(v["name"])):
        value = variable_value(var, selection.get(var["name"]))
        name = var["name"]
        q = q.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value).replace(f"${name}", value)
    if "$" in re.sub(r"\^\$|\$/|\$\)|\$tag_\w+", "", q.replace("$C", "").replace("$D", "")):
        raise AssertionError(f"unsubstituted variable left in {q}")
    return q


def panel_range(panel: Row, dashboard: Row, rng: TimeRange, now_ms: int) -> TimeRange:
    """Apply a panel's relative time override (now/d, now/w) in the dashboard's time zone."""
    rel = panel.get("timeFrom")
    if not rel:
        return rng
    tz = ZoneInfo(dashboard["timezone"])
    now = datetime.fromtimestamp(now_ms / 1000, tz)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if rel == "now/d":
        start = day
    elif rel == "now/w":
        assert dashboard.get("weekStart") == "monday"
        start = day - timedelta(days=now.weekday())
    elif rel[:-1].isdigit() and rel[-1] in "dh":  # rangeutil.describeTextRange: "7d" is now-7d .. now
        start = now - timedelta(**{"days" if rel[-1] == "d" else "hours": int(rel[:-1])})
    else:
        raise AssertionError(f"unsupported timeFrom {rel}")
    return TimeRange(int(start.timestamp() * 1000), now_ms)


def to_table(db: InfluxQL, query: str) -> Table:
    """The InfluxQL datasource's table format: Time, tag columns, then value columns.

    A query without any series gives a frame without fields (``Table([])``), which Grafana's
    merge drops (``dataFrames.filter((frame) => frame.fields.length > 0)``).
    """
    series_list = db.query(query)
    if not series_list:
        return Table([])
    table = Table(["Time"])
    for series in series_list:
        for tag in series.tags:
            if tag not in table.columns:
                table.columns.append(tag)
        for c in series.columns[1:]:
            if c not in table.columns:
                table.columns.append(c)
        for values in series.values:
            row = dict(zip(series.columns, values, strict=True))
            row["Time"] = row.pop("time")
            table.rows.append(row | series.tags)
    return table


def _js_num(v: Any) -> float:
    """JavaScript ToNumber: null -> 0, undefined -> NaN."""
    if v is UNDEFINED:
        return math.nan
    return 0.0 if v is None else float(v)


def _js_op(a: Any, op: str, b: Any) -> float:
    # packages/grafana-data/src/utils/binaryOperators.ts: plain JS operators, e.g. (a, b) => a / b
    x, y = _js_num(a), _js_num(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if y == 0:
        return math.nan if x == 0 else math.copysign(math.inf, x)
    return x / y


def _operand(table: Table, name: str, row: Row) -> Any:
    if name in table.columns:
        return row.get(name)
    return float(name)


def merge(tables: list[Table]) -> Table:
    """Grafana's ``mergeTransformer`` (packages/grafana-data/src/transformations/transformers/merge.ts).

    - frames without fields are dropped; one frame or none is returned as it is;
    - the key fields are those whose NAME exists in every frame (``fieldExistsInAllFrames``),
      whatever their type; the row key is their values concatenated (``createKeyFactory``);
    - a row joins an earlier one with the same key when no shared field disagrees, treating
      undefined or null in the earlier row as "no opinion" (``isMergable``), else it is a new row;
    - the output is built with ``MutableDataFrame.add``, which pushes ``MISSING_VALUE``
      (= undefined, packages/grafana-data/src/dataframe/MutableDataFrame.ts) for every field
      the row's object lacks. So a count query without a row for this key leaves the cell
      undefined, NOT null: arithmetic on it gives NaN (see :func:`_js_num`).
    """
    if len(tables) <= 1:
        return tables[0] if tables else Table([])
    data = [t for t in tables if t.columns]
    if not data:
        return tables[0]
    names: list[str] = []
    for t in data:
        names += [c for c in t.columns if c not in names]
    keys = [c for c in names if all(c in t.columns for t in data)]
    by_key: dict[str, list[Row]] = {}
    in_order: list[Row] = []
    for t in data:
        for r in t.rows:
            value = {c: r.get(c) for c in t.columns}
            key = "".join(str(value.get(c)) for c in keys)
            merged = False
            for existing in by_key.setdefault(key, []):
                if all(existing.get(c, UNDEFINED) is UNDEFINED or existing.get(c) is None or existing[c] == v
                       for c, v in value.items()):
                    existing.update(value)
                    merged = True
            if not merged:
                by_key[key].append(value)
                in_order.append(value)
    return Table(names, [{c: r.get(c, UNDEFINED) for c in names} for r in in_order])


def _moment(fmt: str, t: datetime) -> str:
    out = []
    for literal, token in re.findall(r"\[([^\]]*)\]|(E|HH)", fmt):
        out.append(literal if literal else str(t.isoweekday()) if token == "E" else f"{t.hour:02d}")
    return "".join(out)


def apply(tr: Row, table: Table, tz: str) -> Table:
    tid, o = tr["id"], tr["options"]
    if tid == "calculateField":
        # packages/grafana-data/src/transformations/transformers/calculateField.ts (calculateFieldTransformer)
        if o["mode"] == "reduceRow":
            # getReduceRowCreator -> doStandardCalcs (fieldReducer.ts): ``sum`` starts at 0 and only
            # values that are not null/undefined (nor NaN) are added, so a missing cell sums to 0;
            # the included fields are matched by name (a field absent from the frame adds nothing).
            red = o["reduce"]
            assert red["reducer"] == "sum"
            include = [c for c in red["include"] if c in table.columns]
            for r in table.rows:
                vals = [r.get(c) for c in include]
                r[o["alias"]] = float(sum(v for v in vals if not is_missing(v) and not
                                          (isinstance(v, float) and math.isnan(v))))
        elif o["mode"] == "index":
            for i, r in enumerate(table.rows):
                r[o["alias"]] = i
        else:
            b = o["binary"]
            missing = [n for n in (b["left"], b["right"]) if n not in table.columns
                       and not re.fullmatch(r"-?\d+(\.\d+)?", n)]
            if missing:  # getBinaryCreator returns undefined when an operand field does not exist: no new field
                return table
            for r in table.rows:
                r[o["alias"]] = _js_op(_operand(table, b["left"], r), b["operator"], _operand(table, b["right"], r))
        table.columns.append(o["alias"])
        return table
    if tid == "sortBy":
        s = o["sort"][0]

        def comparable(v: Any) -> bool:
            return not is_missing(v) and not (isinstance(v, float) and math.isnan(v))

        present = [r for r in table.rows if comparable(r.get(s["field"]))]
        absent = [r for r in table.rows if not comparable(r.get(s["field"]))]
        present.sort(key=lambda r: r[s["field"]], reverse=s.get("desc", False))
        return Table(table.columns, present + absent)
    if tid == "filterByValue":
        f = o["filters"][0]
        assert f["config"]["id"] == "greaterOrEqual" and o["type"] == "include"
        lim = f["config"]["options"]["value"]
        return Table(table.columns, [r for r in table.rows if _js_num(r.get(f["fieldName"])) >= lim])  # NaN: out
    if tid == "organize":
        keep = [c for c in table.columns if not o["excludeByName"].get(c)]
        order = o.get("indexByName") or {}
        if order:  # fields named in indexByName take those positions, the rest follow in their order
            pos = {c: i for i, c in enumerate(keep)}
            keep.sort(key=lambda c: order.get(c, len(order) + pos[c]))
        ren = o["renameByName"]
        return Table([ren.get(c, c) for c in keep], [{ren.get(c, c): r.get(c) for c in keep} for r in table.rows])
    if tid == "formatTime":
        zone = ZoneInfo(tz)
        for r in table.rows:
            r[o["timeField"]] = _moment(o["outputFormat"], datetime.fromtimestamp(r[o["timeField"]] / 1000, zone))
        return table
    if tid == "extractFields":
        for r in table.rows:
            src = r.get(o["source"])
            if o["format"] == "kvp":
                parsed = dict(p.split("=", 1) for p in str(src).split())
            else:
                try:
                    doc = json.loads(src or "")
                except ValueError:
                    doc = {}
                parsed = {p["path"]: doc.get(p["path"]) for p in o["jsonPaths"]}
            for k, v in parsed.items():
                r[k] = v
                if k not in table.columns:
                    table.columns.append(k)
        return table
    if tid == "groupBy":
        keys = [k for k, v in o["fields"].items() if v["operation"] == "groupby"]
        aggs = {k: v["aggregations"] for k, v in o["fields"].items() if v["operation"] == "aggregate"}
        groups: dict[tuple[Any, ...], list[Row]] = {}
        for r in table.rows:
            groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
        out = Table(keys + [f"{f} ({a})" for f, al in aggs.items() for a in al])
        for gk, members in groups.items():
            row = dict(zip(keys, gk, strict=True))
            for f, al in aggs.items():
                for a in al:
                    vals = [r.get(f) for r in members if not is_missing(r.get(f))]
                    if a == "count":
                        row[f"{f} ({a})"] = len(vals)
                    elif a == "first":  # fieldReducer ``first``: the first row's value, null or not
                        row[f"{f} ({a})"] = members[0].get(f)
                    elif a == "allValues":  # fieldReducer ``allValues``: every value, in row order
                        row[f"{f} ({a})"] = [r.get(f) for r in members]
                    else:
                        assert a == "sum", a
                        row[f"{f} ({a})"] = sum(vals)
            out.rows.append(row)
        return out
    if tid == "groupingToMatrix":
        rf, cf, vf = o["rowField"], o["columnField"], o["valueField"]
        cols: list[Any] = []
        matrix: dict[Any, Row] = {}
        for r in table.rows:
            if r[cf] not in cols:
                cols.append(r[cf])
            matrix.setdefault(r[rf], {f"{rf}\\{cf}": r[rf]})[r[cf]] = r[vf]
        return Table([f"{rf}\\{cf}", *cols], list(matrix.values()))
    raise AssertionError(f"transformation {tid} not simulated")


def run_panel(db: InfluxQL, dashboard: Row, panel: Row, rng: TimeRange, now_ms: int,
              selection: dict[str, list[str] | None] | None = None, interval_ms: int = 60_000) -> Table:
    """Everything Grafana does for one panel; returns the final table the panel displays."""
    selection = selection or {}
    prng = panel_range(panel, dashboard, rng, now_ms)
    tables = [to_table(db, interpolate(t["query"], dashboard, prng, selection, interval_ms))
              for t in panel["targets"]]
    transforms = panel["transformations"]
    if transforms and transforms[0]["id"] == "merge":
        table, transforms = merge(tables), transforms[1:]
    else:
        assert len(tables) == 1, "several queries without merge"
        table = tables[0]
    for tr in transforms:
        table = apply(tr, table, dashboard["timezone"])
    return table


def display_text(panel: Row, value: Any) -> Any:
    """A cell through the panel's value mappings (fieldConfig.defaults.mappings), as Grafana displays it.

    packages/grafana-data/src/utils/valueMappings.ts getValueMappingResult: the first mapping that
    matches wins; a ``value`` mapping matches the value's string form, ``special`` nan matches NaN.
    """
    for m in panel["fieldConfig"]["defaults"].get("mappings", []):
        if m["type"] == "value" and str(value) in m["options"]:
            return m["options"][str(value)]["text"]
        if (m["type"] == "special" and m["options"]["match"] == "nan" and isinstance(value, float)
                and math.isnan(value)):
            return m["options"]["result"]["text"]
    return value


def stat_value(panel: Row, table: Table) -> Any:
    """A stat panel's number: lastNotNull of the field its reduceOptions select."""
    pattern = panel["options"]["reduceOptions"]["fields"].strip("/")
    cols = [c for c in table.columns if re.fullmatch(pattern, c)]
    if not cols:
        return None
    vals = [v for v in table.col(cols[0]) if not is_missing(v)]  # lastNotNull keeps NaN: it would show "NaN"
    return vals[-1] if vals else None


# --------------------------------------------------------------------------- alerting

def evaluate_rule(db: InfluxQL, rule: Row, now_ms: int) -> tuple[str, dict[tuple[tuple[str, str], ...], bool]]:
    """Evaluate one provisioned alert rule; returns (state, {labels: firing}).

    state is "NoData" when the queries returned nothing (then ``noDataState`` applies).
    """
    values: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {}
    for d in rule["data"]:
        ref, model = d["refId"], d["model"]
        if d["datasourceUid"] != "__expr__":
            rel = d["relativeTimeRange"]
            rng = TimeRange(now_ms - rel["from"] * 1000, now_ms - rel["to"] * 1000)
            q = model["query"].replace("$timeFilter", f"time >= {rng.start_ms}ms and time <= {rng.end_ms}ms")
            series = db.query(q)
            values[ref] = {tuple(sorted(s.tags.items())): [v[1] for v in s.values] for s in series}
        elif model["type"] == "reduce":
            assert model["reducer"] == "last"
            src = values[model["expression"]]
            values[ref] = {k: ([x for x in v if x is not None] or [None])[-1] for k, v in src.items()}
        elif model["type"] == "threshold":
            ev = model["conditions"][0]["evaluator"]
            op = {"gt": lambda a, b: a > b, "lt": lambda a, b: a < b}[ev["type"]]
            values[ref] = {k: v is not None and op(v, ev["params"][0]) for k, v in values[model["expression"]].items()}
        elif model["type"] == "math":
            refs = re.findall(r"\$(\w+)", model["expression"])
            labels = set().union(*(values[r].keys() for r in refs))
            out = {}
            for k in labels:
                expr = model["expression"].replace("&&", " and ").replace("||", " or ")
                for r in refs:
                    expr = expr.replace(f"${r}", repr(values[r].get(k)))
                out[k] = bool(eval(expr))
            values[ref] = out
    if not any(values[d["refId"]] for d in rule["data"] if d["datasourceUid"] != "__expr__"):
        return "NoData", {}
    return "OK", values[rule["condition"]]
