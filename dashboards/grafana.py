"""Small typed factories that emit Grafana dashboard JSON (schemaVersion 39, Grafana 10.4/11).

Our own rather than grafana-foundation-sdk: the SDK is a large generated API
for every panel option, we need five panel kinds and want the JSON to be
byte-stable (checked in, diffed in CI). Every panel keeps a stable string
``key`` so tests can name the number each panel shows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 39
GRID_WIDTH = 24
MAX_UID = 40  # Grafana's limit on dashboard uids

Json = dict[str, Any]
NO_DATA = "Không có dữ liệu"  # what a stat shows when its query returned nothing
PanelKind = Literal["stat", "table", "timeseries", "barchart", "heatmap"]


def stable_uid(*parts: str) -> str:
    """A readable uid, hashed down when it would exceed Grafana's 40 characters."""
    uid = "-".join(parts)
    if len(uid) <= MAX_UID:
        return uid
    digest = hashlib.sha1(uid.encode()).hexdigest()[:10]
    return f"{uid[:MAX_UID - 11]}-{digest}"


@dataclass(frozen=True)
class Target:
    """One InfluxQL query of a panel (raw query mode)."""

    ref: str
    query: str
    fmt: Literal["table", "time_series"] = "table"
    alias: str = ""

    def to_json(self, ds: Json) -> Json:
        out: Json = {"refId": self.ref, "datasource": ds, "rawQuery": True, "query": self.query,
                     "resultFormat": self.fmt}
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True)
class Transform:
    id: str
    options: Json

    def to_json(self) -> Json:
        return {"id": self.id, "options": self.options}


def merge() -> Transform:
    """Join the rows of several queries on their shared columns (time and tags)."""
    return Transform("merge", {})


def binary(left: str, op: str, right: str, alias: str) -> Transform:
    """calculateField in binary mode: a new column ``alias = left op right``."""
    return Transform("calculateField", {"mode": "binary", "alias": alias, "replaceFields": False,
                                        "binary": {"left": left, "operator": op, "right": right}})


def sort_by(column: str, desc: bool = True) -> Transform:
    return Transform("sortBy", {"fields": {}, "sort": [{"field": column, "desc": desc}]})


def organize(rename: dict[str, str], exclude: tuple[str, ...] = ("Time",), order: tuple[str, ...] = ()) -> Transform:
    return Transform("organize", {"excludeByName": {k: True for k in exclude},
                                  "indexByName": {k: i for i, k in enumerate(order)}, "renameByName": rename})


def reduce_row(column: str, alias: str) -> Transform:
    """calculateField in reduceRow mode: ``alias`` = sum of ``column`` in the row, 0 where it is missing.

    Grafana's doStandardCalcs starts ``sum`` at 0 and skips null/undefined, so this turns the
    undefined cell that ``merge`` leaves for a count query without a row into 0 (not NaN).
    """
    return Transform("calculateField", {"mode": "reduceRow", "alias": alias, "replaceFields": False,
                                        "reduce": {"reducer": "sum", "include": [column],
                                                   "nullValueMode": "null as zero"}})


def filter_at_least(column: str, minimum: float) -> Transform:
    """filterByValue: keep rows whose ``column`` >= minimum (the minimum-sample rule)."""
    return Transform("filterByValue", {
        "type": "include", "match": "all",
        "filters": [{"fieldName": column, "config": {"id": "greaterOrEqual", "options": {"value": minimum}}}],
    })


def row_index(alias: str) -> Transform:
    """calculateField in index mode: 0-based row number (after sorting = rank - 1)."""
    return Transform("calculateField", {"mode": "index", "alias": alias, "replaceFields": False,
                                        "index": {"asPercentile": False}})


def group_by(keys: tuple[str, ...], aggregate: str | dict[str, str]) -> Transform:
    """groupBy: one row per value of ``keys``; ``aggregate`` = a field to count, or field -> calculation."""
    fields: Json = {k: {"aggregations": [], "operation": "groupby"} for k in keys}
    calcs = {aggregate: "count"} if isinstance(aggregate, str) else aggregate
    for name, calc in calcs.items():
        fields[name] = {"aggregations": [calc], "operation": "aggregate"}
    return Transform("groupBy", {"fields": fields})


@dataclass(frozen=True)
class Panel:
    """A panel: queries, the Grafana transformations that finish the number, and display."""

    key: str
    kind: PanelKind
    title: str
    description: str
    targets: tuple[Target, ...]
    transforms: tuple[Transform, ...] = ()
    unit: str = ""
    value_field: str = ""  # for stat panels: the column shown
    time_from: str = ""  # panel relative time, e.g. "now/d" (today so far)
    width: int = 12
    height: int = 8
    decimals: int | None = None
    value_text: tuple[tuple[str, str], ...] = ()  # stored value -> text shown (e.g. class ids -> Vietnamese)
    percent: tuple[str, ...] = ()  # shown column names of ratios in a table: "89.7%", never 0.897
    no_value: str = ""  # what an empty cell shows (a stat: NO_DATA)
    times: tuple[str, ...] = ()  # shown column names of times in a table: local date and time to the second
    value_mappings: tuple[Json, ...] = ()  # further Grafana value mappings (ranges, regexes), after value_text
    # value mappings of one shown column only (e.g. reason lists): (column name, mappings)
    column_mappings: tuple[tuple[str, tuple[Json, ...]], ...] = ()

    def _overrides(self) -> list[Json]:
        # a ratio column by its shown name (after organize): percent with one decimal, like the stat panels
        out = [{"matcher": {"id": "byName", "options": name},
                "properties": [{"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 1}]}
               for name in self.percent]
        # a time column: Grafana's default adds milliseconds when a column's times span under a minute
        out += [{"matcher": {"id": "byName", "options": name},
                 "properties": [{"id": "unit", "value": "dateTimeAsIso"}]} for name in self.times]
        return out + [{"matcher": {"id": "byName", "options": name},
                       "properties": [{"id": "mappings", "value": list(mappings)}]}
                      for name, mappings in self.column_mappings]

    def to_json(self, panel_id: int, pos: Json, ds: Json) -> Json:
        defaults: Json = {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        elif self.unit != "percentunit":
            defaults["decimals"] = 0  # counts are whole numbers: "45", never "45.0"
        if self.kind == "stat" or self.no_value:
            defaults["noValue"] = self.no_value or NO_DATA  # Grafana's own "No data" is English
        if self.unit == "percentunit" or self.kind == "table":
            # a ratio of nothing (0 rated) is 0/0 = NaN: shown as "—", never "NaN"
            defaults["mappings"] = [{"type": "special", "options": {"match": "nan", "result": {"text": "—"}}}]
        if self.value_text:
            defaults.setdefault("mappings", []).append(
                {"type": "value", "options": {v: {"text": t, "index": i} for i, (v, t) in enumerate(self.value_text)}})
        if self.value_mappings:
            defaults.setdefault("mappings", []).extend(self.value_mappings)
        out: Json = {
            "id": panel_id, "type": self.kind, "title": self.title, "description": self.description,
            "gridPos": pos, "datasource": ds,
            "targets": [t.to_json(ds) for t in self.targets],
            "transformations": [t.to_json() for t in self.transforms],
            "fieldConfig": {"defaults": defaults, "overrides": self._overrides()},
            "options": self._options(),
        }
        if self.time_from:
            out["timeFrom"] = self.time_from
        return out

    def _options(self) -> Json:
        if self.kind == "stat":
            return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": f"/^{self.value_field}$/",
                                      "values": False}, "colorMode": "value", "graphMode": "none"}
        if self.kind == "table":
            return {"showHeader": True, "cellHeight": "sm"}
        if self.kind == "heatmap":
            return {"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left"}}
        return {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True}}


@dataclass(frozen=True)
class Variable:
    """A template variable: a SHOW TAG VALUES query, or a hidden constant (per-centre copies)."""

    name: str
    label: str
    query: str = ""
    constant: str | None = None
    single: bool = False  # one value only (no multi, no All): where rankings compare within one centre

    def to_json(self, ds: Json) -> Json:
        if self.constant is not None:
            return {"type": "constant", "name": self.name, "label": self.label, "hide": 2,
                    "query": self.constant, "skipUrlSync": False}
        return {
            "type": "query", "name": self.name, "label": self.label, "datasource": ds,
            "query": self.query, "definition": self.query, "refresh": 2, "sort": 1,
            # ".*" rather than a list of values for "All": also matches points without the tag
            # (a rating without a service), which a (a|b|c) list would silently drop.
            "multi": not self.single, "includeAll": not self.single, "allValue": None if self.single else ".*",
            "current": {} if self.single else {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0,
            "options": [], "regex": "", "skipUrlSync": False,
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("hailong",)
    time_from: str = "now-7d"
    refresh: str = "30s"
    timezone: str = "Asia/Ho_Chi_Minh"

    def to_json(self, datasource_uid: str) -> Json:
        ds = {"type": "influxdb", "uid": datasource_uid}
        panels: list[Json] = []
        x = y = row_h = 0
        for i, panel in enumerate(self.panels, start=1):
            if x + panel.width > GRID_WIDTH:  # simple flow layout, left to right, top to bottom
                x, y, row_h = 0, y + row_h, 0
            panels.append(panel.to_json(i, {"h": panel.height, "w": panel.width, "x": x, "y": y}, ds))
            x += panel.width
            row_h = max(row_h, panel.height)
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": list(self.tags), "timezone": self.timezone, "weekStart": "monday", "editable": False,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"}, "graphTooltip": 1,
            "templating": {"list": [v.to_json(ds) for v in self.variables]},
            "annotations": {"list": []}, "links": [], "panels": panels,
        }
