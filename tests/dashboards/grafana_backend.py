"""What Grafana does before a panel's frames reach the browser, re-done in Python for the tests.

Grafana's server cannot run here (not packaged for Debian). What its Go backend and its query
runner do is small and is kept here, with the source it follows:
- the InfluxQL datasource's macros (pkg/tsdb/influxdb/influxql/models/query.go ``Build``, ``$timeFilter``
  as absolute ms, ``$__interval``/``$__interval_ms``) and the template variables the query editor
  substitutes before the request (public/app/plugins/datasource/influxdb/datasource.ts
  ``applyTemplateVariables`` -> templateSrv.replace with the ``regex`` format: one value escaped with
  lodash escapeRegExp, several as ``(a|b)``, All as the variable's allValue);
- the InfluxQL response as data frames in the table result format
  (pkg/tsdb/influxdb/influxql/buffered/response_parser.go ``transformRowsForTable``): one frame per
  query (named after the measurement) with a ``Time`` field, then the first series' tag columns, then the
  value columns, every series' rows in turn; a query without any series gives no frame at all.
Everything after that (transformations, field display) is Grafana's own frontend code, run by
tests/dashboards/grafana_frontend.py through @grafana/data; alert rules are in grafana_alerting.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from storage.influxql import InfluxQL

Row = dict[str, Any]
Frame = dict[str, Any]  # {"refId", "fields": [{"name", "type", "values"}]} as @grafana/data's DataFrame


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


def _field_type(values: list[Any]) -> str:
    # util.Typeof: the column's type from its values; null-only columns are float64 (number)
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if any(isinstance(v, str) for v in present):
        return "string"
    return "number"


def to_frames(db: InfluxQL, query: str, ref: str) -> list[Frame]:
    """One query's response in the table format: no frame without a series, else one frame with
    Time, the first series' tag keys, then the value columns (``DisplayNameFromDS`` = column name)."""
    series_list = db.query(query)
    if not series_list:
        return []  # transformRowsForTable: ``if len(rows) == 0 { return make([]*data.Frame, 0) }``
    first = series_list[0]
    fields = [{"name": "Time", "type": "time", "config": {},
               "values": [v[0] for s in series_list for v in s.values]}]
    for tag in first.tags:
        fields.append({"name": tag, "type": "string", "config": {"displayNameFromDS": tag},
                       "values": [s.tags.get(tag) for s in series_list for _ in s.values]})
    for i, c in enumerate(first.columns[1:], start=1):
        values = [v[i] for s in series_list for v in s.values]
        fields.append({"name": c, "type": _field_type(values), "config": {"displayNameFromDS": c},
                       "values": values})
    return [{"refId": ref, "name": first.name, "fields": fields}]


def query_frames(db: InfluxQL, dashboard: Row, panel: Row, rng: TimeRange, selection: dict[str, list[str] | None],
                 interval_ms: int = 60_000) -> list[Frame]:
    """Every target of a panel, interpolated and run on InfluxDB: the frames the frontend receives."""
    return [frame for t in panel["targets"]
            for frame in to_frames(db, interpolate(t["query"], dashboard, rng, selection, interval_ms), t["refId"])]
