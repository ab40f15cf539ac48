"""Grafana-managed alerting, re-done in Python for the tests: provisioned rules run on real InfluxDB.

Grafana cannot run here, so this follows its source (grafana/grafana, read for this module):
- queries: pkg/tsdb/influxdb/models/query.go ``Build`` (``$timeFilter`` as absolute ms from the
  rule's relativeTimeRange, ``$interval``/``$__interval_ms``/``$__interval`` from intervalMs); every
  InfluxDB series is one frame whose labels are its tags;
- expressions: pkg/expr/commands.go ``ReduceCommand``, pkg/expr/mathexp/reduce.go (``Last``, ``Sum``,
  ``Count`` ..., the ``DropNonNumber`` / ``ReplaceNonNumberWithValue`` mappers), pkg/expr/threshold.go
  (predicates, nil stays nil), pkg/expr/mathexp/exp.go (``union`` of label sets: unmatched series are
  dropped; ``binaryOp`` with ``&&``/``||`` short-circuit before NaN);
- condition: pkg/services/ngalert/eval/eval.go ``queryDataResponseToExecutionResults`` (a query
  returning no frames makes the whole evaluation NoData with labels datasource_uid and ref_id) and
  ``evaluateExecutionResult``/``frameToResult`` (nil -> NoData, 0 -> Normal, other incl. NaN ->
  Alerting, duplicate label sets -> Error);
- states: pkg/services/ngalert/state/state.go ``resultNormal``/``resultAlerting`` (``for`` pending
  period)/``resultNoData``/``resultError`` (noDataState, execErrState); series missing for two
  intervals are resolved as stale (state/manager.go, ``stateIsStale``);
- templating: pkg/services/ngalert/state/template/template.go ``Expand`` (``$labels``, ``$values``,
  ``$value``, missing key -> ``[no value]``, ``Value.String`` with two significant digits) over
  Go text/template (the subset our rules use: if/else if/else, range, define/template, pipelines
  with reReplaceAll, externalURL, trim markers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from storage.influxql import InfluxQL

from .gotemplate import MISSING, GoTemplate, render

Labels = tuple[tuple[str, str], ...]
EXPR = "__expr__"


def labels_of(d: dict[str, str]) -> Labels:
    return tuple(sorted(d.items()))


# --------------------------------------------------------------------------- values (mathexp types)

@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[int, float | None]]


@dataclass
class Number:
    labels: dict[str, str]
    value: float | None


@dataclass
class Scalar:
    value: float | None


@dataclass
class NoData:
    pass


Value = Series | Number | Scalar | NoData


class EvalError(Exception):
    """An evaluation error (execErrState applies)."""


def _contains(a: dict[str, str], b: dict[str, str]) -> bool:
    """data.Labels.Contains: every label of b is in a with the same value."""
    return all(a.get(k) == v for k, v in b.items())


# --------------------------------------------------------------------------- queries

def build_query(raw: str, from_ms: int, to_ms: int, interval_ms: int) -> str:
    """pkg/tsdb/influxdb/models/query.go Build: the same replacements, in the same order."""
    interval = _format_interval(interval_ms)
    q = raw.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    q = q.replace("$interval", interval).replace("$__interval_ms", str(interval_ms))
    return q.replace("$__interval", interval)


def _format_interval(ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def run_query(db: InfluxQL, query: str) -> list[Series]:
    """One frame per series and value column; labels = the series' tags."""
    out = []
    for s in db.query(query):
        for col in range(1, len(s.columns)):
            points: list[tuple[int, float | None]] = []
            for row in s.values:
                v = row[col]
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    # SSE only reduces numeric fields: a bool/string value field is an error
                    raise EvalError(f"input data must be numeric, got {type(v).__name__} in column {s.columns[col]}")
                points.append((row[0], None if v is None else float(v)))
            out.append(Series(dict(s.tags), points))
    return out


# --------------------------------------------------------------------------- reduce, threshold

def _reduce_values(reducer: str, vals: list[float | None]) -> float | None:
    """pkg/expr/mathexp/reduce.go: Sum/Avg/Min/Max propagate nil or NaN as NaN; Last returns the last value."""
    if reducer == "count":
        return float(len(vals))
    if reducer == "last":
        return math.nan if not vals else vals[-1]
    if reducer in ("min", "max") and not vals:
        return math.nan
    if any(v is None or math.isnan(v) for v in vals):
        return math.nan
    nums = [v for v in vals if v is not None]
    if reducer == "sum":
        return float(sum(nums))
    if reducer == "mean":
        return float(sum(nums)) / len(nums) if nums else math.nan
    if reducer == "min":
        return min(nums)
    if reducer == "max":
        return max(nums)
    raise EvalError(f"reduction {reducer} not implemented")


def _mapper(settings: dict[str, Any] | None) -> tuple[str, float]:
    mode = (settings or {}).get("mode") or ""
    if mode == "replaceNN":
        return mode, float((settings or {})["replaceWithValue"])
    if mode not in ("", "dropNN"):
        raise EvalError(f"reducer mode '{mode}' is not supported")
    return mode, 0.0


def _non_number(v: float | None) -> bool:
    return v is None or math.isnan(v) or math.isinf(v)


def reduce(model: dict[str, Any], src: list[Value]) -> list[Value]:
    """ReduceCommand.Execute + Series.Reduce with its ReduceMapper (MapInput per point, MapOutput)."""
    reducer = model["reducer"].lower()
    mode, replace = _mapper(model.get("settings"))
    out: list[Value] = []
    for v in src:
        if isinstance(v, NoData):
            out.append(NoData())
        elif isinstance(v, Series):
            vals = [p[1] for p in v.points]
            if mode == "dropNN":
                vals = [x for x in vals if not _non_number(x)]
            elif mode == "replaceNN":
                vals = [replace if _non_number(x) else x for x in vals]
            r = _reduce_values(reducer, vals)
            if r is not None and mode and math.isnan(r):
                r = None if mode == "dropNN" else replace
            out.append(Number(dict(v.labels), r))
        elif isinstance(v, Number):
            val = v.value
            if mode and _non_number(val):  # "same logic as in mapSeries": a dropped number disappears
                if mode == "dropNN":
                    continue
                val = replace
            out.append(Number(dict(v.labels), val))
        else:
            raise EvalError("can only reduce type series")
    return out


PREDICATES = {
    "gt": lambda f, p: f > p[0], "lt": lambda f, p: f < p[0], "eq": lambda f, p: f == p[0],
    "ne": lambda f, p: f != p[0], "gte": lambda f, p: f >= p[0], "lte": lambda f, p: f <= p[0],
    "within_range": lambda f, p: p[0] < f < p[1], "outside_range": lambda f, p: f < p[0] or f > p[1],
    "within_range_included": lambda f, p: p[0] <= f <= p[1],
    "outside_range_included": lambda f, p: f <= p[0] or f >= p[1],
}


def threshold(model: dict[str, Any], src: list[Value]) -> list[Value]:
    """ThresholdCommand.Execute: 1/0 per value, nil stays nil, NoData passes through."""
    conds = model["conditions"]
    if len(conds) != 1:
        raise EvalError("threshold expression requires exactly one condition")
    ev = conds[0]["evaluator"]
    pred = PREDICATES[ev["type"]]

    def one(v: float | None) -> float | None:
        return None if v is None else float(bool(pred(v, ev["params"])))

    out: list[Value] = []
    for v in src:
        if isinstance(v, NoData):
            out.append(NoData())
        elif isinstance(v, Number):
            out.append(Number(dict(v.labels), one(v.value)))
        elif isinstance(v, Series):
            out.append(Series(dict(v.labels), [(t, one(x)) for t, x in v.points]))
        else:
            out.append(Scalar(one(v.value)))
    return out


# --------------------------------------------------------------------------- math

_TOKEN = re.compile(r"\s*(?:(\$\{?\w+\}?)|(\d+(?:\.\d*)?(?:e[+-]?\d+)?)|(\|\||&&|==|!=|>=|<=|\*\*|[-+*/%<>!()]))")
# pkg/expr/mathexp/parse: lowest to highest binding
_PRECEDENCE = {"||": 1, "&&": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3, "+": 4, "-": 4,
               "*": 5, "/": 5, "%": 5, "**": 6}


def _tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise EvalError(f"cannot parse math expression at {expr[pos:]!r}")
        out.append(m.group(0).strip())
        pos = m.end()
    return out


def binary_op(op: str, a: float, b: float) -> float:
    """mathexp/exp.go binaryOp: short-circuit first, then NaN, then the operator."""
    if op == "||" and a != 0:
        return 1.0
    if op == "&&" and a == 0:
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if op in ("==", "!=", ">", "<", ">=", "<=", "||", "&&"):
        return float({"==": a == b, "!=": a != b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b,
                      "||": a != 0 or b != 0, "&&": a != 0 and b != 0}[op])
    if op == "/":
        return a / b if b != 0 else (math.nan if a == 0 else math.copysign(math.inf, a))
    if op == "%":
        return math.fmod(a, b) if b != 0 else math.nan
    return {"+": a + b, "-": a - b, "*": a * b, "**": a ** b}[op]


def _union(a: list[Value], b: list[Value]) -> list[tuple[dict[str, str] | None, Value, Value]]:
    """mathexp/exp.go union: pairs with equal labels, or where one side's labels contain the other's."""
    if not a or not b:
        return []
    if (len(a) == 1 or len(b) == 1) and (isinstance(a[0], NoData) or isinstance(b[0], NoData)):
        return [(None, a[0], b[0])]
    out: list[tuple[dict[str, str] | None, Value, Value]] = []
    for x in a:
        for y in b:
            la = {} if isinstance(x, (Scalar, NoData)) else x.labels
            lb = {} if isinstance(y, (Scalar, NoData)) else y.labels
            if la == lb or not la or not lb:
                labels = la or lb
            elif len(la) == len(lb):
                continue
            elif _contains(la, lb):
                labels = la
            elif _contains(lb, la):
                labels = lb
            else:
                continue
            out.append((labels, x, y))
    if not out and len(a) == 1 and len(b) == 1:
        out.append(({}, a[0], b[0]))
    return out


def _apply(op: str, labels: dict[str, str] | None, x: Value, y: Value) -> Value:
    if isinstance(x, NoData):
        return x
    if isinstance(y, NoData):
        return y
    if isinstance(x, Series) or isinstance(y, Series):
        raise EvalError("math on series is not used by the hailong rules")
    xv, yv = x.value, y.value
    if isinstance(x, Scalar) and isinstance(y, Scalar):
        return Scalar(None if xv is None or yv is None else binary_op(op, xv, yv))
    value = None if xv is None or yv is None else binary_op(op, xv, yv)  # biScalarNumber: nil -> nil
    return Number(dict(labels or {}), value)


def evaluate_math(expression: str, variables: dict[str, list[Value]]) -> list[Value]:
    toks = _tokens(expression)
    pos = 0

    def primary() -> list[Value]:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "(":
            v = parse(0)
            if toks[pos] != ")":
                raise EvalError("missing )")
            pos += 1
            return v
        if tok in ("-", "!"):
            arg = primary()
            out: list[Value] = []
            for v in arg:
                if isinstance(v, NoData):
                    out.append(v)
                    continue
                f = v.value  # type: ignore[union-attr]
                r = None if f is None else (math.nan if math.isnan(f) else (-f if tok == "-" else float(f == 0)))
                out.append(Scalar(r) if isinstance(v, Scalar) else Number(dict(v.labels), r))  # type: ignore[union-attr]
            return out
        if tok.startswith("$"):
            name = tok.strip("${}")
            return variables[name]
        return [Scalar(float(tok))]

    def parse(min_prec: int) -> list[Value]:
        nonlocal pos
        left = primary()
        while pos < len(toks) and toks[pos] in _PRECEDENCE and _PRECEDENCE[toks[pos]] > min_prec:
            op = toks[pos]
            pos += 1
            right = parse(_PRECEDENCE[op] - (1 if op == "**" else 0))
            left = [_apply(op, lab, x, y) for lab, x, y in _union(left, right)]
        return left

    result = parse(0)
    if pos != len(toks):
        raise EvalError(f"unexpected {toks[pos]!r} in {expression!r}")
    return result


# --------------------------------------------------------------------------- one evaluation

@dataclass
class Result:
    """eval.Result: one alert instance's state for one evaluation."""

    state: str  # Normal | Alerting | NoData | Error
    labels: dict[str, str]
    values: dict[str, tuple[dict[str, str], float | None]] = field(default_factory=dict)
    error: str = ""


def evaluate(db: InfluxQL, rule: dict[str, Any], now_ms: int) -> list[Result]:
    """conditionEvaluator.Evaluate: run the pipeline, turn the condition into Results."""
    vars_: dict[str, list[Value]] = {}
    no_data: dict[str, str] = {}
    try:
        for d in rule["data"]:
            ref, model = d["refId"], d["model"]
            if d["datasourceUid"] != EXPR:
                rel = d["relativeTimeRange"]
                q = build_query(model["query"], now_ms - rel["from"] * 1000, now_ms - rel["to"] * 1000,
                                int(model.get("intervalMs", 1000)))
                try:
                    frames: list[Value] = list(run_query(db, q))
                except EvalError:
                    raise
                except Exception as exc:  # the datasource failed: a QueryError
                    raise EvalError(f"[{ref}] query failed: {exc}") from exc
                if not frames:
                    no_data[ref] = d["datasourceUid"]
                    frames = [NoData()]
                vars_[ref] = frames
            elif model["type"] == "reduce":
                vars_[ref] = reduce(model, vars_[model["expression"].lstrip("$")])
            elif model["type"] == "threshold":
                vars_[ref] = threshold(model, vars_[model["expression"].lstrip("$")])
            elif model["type"] == "math":
                vars_[ref] = evaluate_math(model["expression"], vars_)
            else:
                raise EvalError(f"expression type {model['type']} not emulated")
    except EvalError as exc:
        return [Result("Error", {}, error=str(exc))]
    if no_data:
        by_ds: dict[str, list[str]] = {}
        for ref, ds in sorted(no_data.items()):
            by_ds.setdefault(ds, []).append(ref)
        return [Result("NoData", {"datasource_uid": ds, "ref_id": ",".join(refs)}) for ds, refs in by_ds.items()]
    condition = [v for v in vars_[rule["condition"]] if not isinstance(v, NoData)]
    if not condition:
        return [Result("NoData", {})]
    captures = [(ref, v) for ref, vals in vars_.items() for v in vals if isinstance(v, Number)]
    results, seen = [], set()
    for v in condition:
        if isinstance(v, Series):
            return [Result("Error", {}, error="looks like time series data, only reduced data can be alerted on.")]
        labels = dict(v.labels) if isinstance(v, Number) else {}
        key = labels_of(labels)
        if key in seen:
            return [Result("Error", {}, error=f"frame cannot uniquely be identified by its labels: {key}")]
        seen.add(key)
        state = "NoData" if v.value is None else ("Normal" if v.value == 0 else "Alerting")
        values = {ref: (dict(c.labels), c.value) for ref, c in captures
                  if c.labels == labels or _contains(labels, c.labels) or _contains(c.labels, labels)}
        results.append(Result(state, labels, values))
    return results


# --------------------------------------------------------------------------- state manager

@dataclass
class AlertState:
    labels: dict[str, str]
    state: str = "Normal"
    started_at_ms: int = 0
    last_eval_ms: int = 0
    resolved_at_ms: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    fired: int = 0  # transitions into Alerting (each is one notification)


def parse_duration_ms(text: str) -> int:
    total = 0
    for n, unit in re.findall(r"(\d+)(ms|s|m|h|d)", text):
        total += int(n) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
    return total


class Rule:
    """One provisioned rule, evaluated over time with Grafana's state transitions."""

    def __init__(self, rule: dict[str, Any], interval: str, folder: str = "hailong",
                 external_url: str = "https://grafana.example.vn") -> None:
        self.rule = rule
        self.interval_ms = parse_duration_ms(interval)
        self.for_ms = parse_duration_ms(rule.get("for", "0s"))
        self.folder = folder
        self.external_url = external_url
        self.states: dict[Labels, AlertState] = {}

    def _labels(self, instance: dict[str, str]) -> dict[str, str]:
        # instance labels, then the rule's labels, then the built-ins (state/cache.go, GetRuleExtraLabels)
        labels = {**instance, **self.rule.get("labels", {})}
        labels.update({"alertname": self.rule["title"], "grafana_folder": self.folder,
                       "__alert_rule_uid__": self.rule["uid"]})
        return labels

    def step(self, db: InfluxQL, now_ms: int) -> list[AlertState]:
        """Evaluate once at ``now_ms``; returns the instances that changed into Alerting now."""
        fired = []
        seen: set[Labels] = set()
        for res in evaluate(db, self.rule, now_ms):
            labels = self._labels(res.labels)
            key = labels_of(labels)
            seen.add(key)
            st = self.states.setdefault(key, AlertState(labels))
            before = st.state
            self._transition(st, res, now_ms)
            st.last_eval_ms = now_ms
            st.annotations = {k: self.expand(v, res, labels, now_ms)
                              for k, v in self.rule.get("annotations", {}).items() if not k.startswith("__")}
            if st.state == "Alerting" and before != "Alerting":
                st.fired += 1
                fired.append(st)
        for key, st in self.states.items():  # missing series: stale after two intervals (state/manager.go)
            if key not in seen and now_ms - st.last_eval_ms >= 2 * self.interval_ms and st.state != "Normal":
                if st.state == "Alerting":
                    st.resolved_at_ms = now_ms
                st.state, st.reason = "Normal", "MissingSeries"
        return fired

    def _transition(self, st: AlertState, res: Result, now_ms: int) -> None:
        if res.state == "Alerting":
            self._alerting(st, now_ms)
        elif res.state == "Normal":
            self._normal(st, now_ms)
        elif res.state == "NoData":
            mode = self.rule["noDataState"]
            if mode == "Alerting":
                self._alerting(st, now_ms)
            elif mode == "NoData":
                if st.state != "NoData":
                    st.state, st.started_at_ms = "NoData", now_ms
            elif mode == "OK":
                self._normal(st, now_ms)
        else:
            mode = self.rule["execErrState"]
            if mode == "Alerting":
                self._alerting(st, now_ms)
            elif mode == "Error":
                if st.state != "Error":
                    st.state, st.started_at_ms = "Error", now_ms
            elif mode == "OK":
                self._normal(st, now_ms)
            st.annotations["Error"] = res.error

    def _alerting(self, st: AlertState, now_ms: int) -> None:
        if st.state == "Alerting":
            return
        if st.state == "Pending":
            if now_ms - st.started_at_ms >= self.for_ms:
                st.state, st.started_at_ms = "Alerting", now_ms
            return
        st.state, st.started_at_ms = ("Pending" if self.for_ms > 0 else "Alerting"), now_ms

    @staticmethod
    def _normal(st: AlertState, now_ms: int) -> None:
        if st.state == "Alerting":
            st.resolved_at_ms = now_ms
        st.state = "Normal"

    def expand(self, tmpl: str, res: Result, labels: dict[str, str], now_ms: int) -> str:
        """state/template/template.go Expand."""
        values = {ref: TemplateValue(lab, v) for ref, (lab, v) in res.values.items()}
        prefix = "{{- $labels := .Labels -}}{{- $values := .Values -}}{{- $value := .Value -}}"
        data = {"Labels": labels, "Values": values, "Value": ""}
        out = render(GoTemplate(prefix + tmpl), data, {"externalURL": lambda: self.external_url})
        return out.replace("<no value>", "[no value]")

    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.state == "Alerting"]


@dataclass(frozen=True)
class TemplateValue:
    """template.Value: prints with two significant digits (Value.String)."""

    Labels: dict[str, str]
    Value: float

    def __str__(self) -> str:
        v = math.nan if self.Value is None else self.Value
        if math.isnan(v):
            return "NaN"
        if v == 0:
            return "0"
        precision = max(0, 2 - (math.floor(math.log10(abs(v))) + 1))
        return f"{v:.{precision}f}"


def rules_by_uid(rules_yaml: dict[str, Any]) -> dict[str, Rule]:
    return {r["uid"]: Rule(r, g["interval"], g["folder"]) for g in rules_yaml["groups"] for r in g["rules"]}


def notification(alerts: list[AlertState], templates: str, subject: str, message: str) -> tuple[str, str]:
    """The e-mail of one alert group: the contact point's subject and message over ExtendedData."""
    firing = [{"Labels": a.labels, "Annotations": a.annotations, "Status": "firing"} for a in alerts
              if a.state == "Alerting"]
    resolved = [{"Labels": a.labels, "Annotations": a.annotations, "Status": "resolved"} for a in alerts
                if a.state != "Alerting"]
    common = dict(set.intersection(*(set(a.labels.items()) for a in alerts))) if alerts else {}
    data = {"Alerts": {"Firing": firing, "Resolved": resolved}, "CommonLabels": common,
            "Status": "firing" if firing else "resolved"}
    out = []
    for text in (subject, message):
        rendered = render(GoTemplate(templates + text), data, {})
        out.append(rendered.replace("<no value>", "[no value]"))
    return out[0], out[1]


def _matches(route: dict[str, Any], labels: dict[str, str]) -> bool:
    ops = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b,
           "=~": lambda a, b: re.fullmatch(b, a) is not None, "!~": lambda a, b: re.fullmatch(b, a) is None}
    return all(ops[op](labels.get(name, ""), value) for name, op, value in route.get("object_matchers", []))


def route(policy: dict[str, Any], labels: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """(receiver, group_by) of every route an alert is delivered through, as Alertmanager's routing tree
    does (prometheus/alertmanager dispatch/route.go ``Match``): depth first, children in order, a
    matching child stops its siblings unless it has ``continue``; the parent's receiver only when no
    child matched; receiver and group_by are inherited from the parent when a route sets none."""

    def walk(node: dict[str, Any], receiver: str, group_by: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
        receiver = node.get("receiver", receiver)
        group_by = tuple(node.get("group_by", group_by))
        out: list[tuple[str, tuple[str, ...]]] = []
        for child in node.get("routes", []):
            if _matches(child, labels):
                out += walk(child, receiver, group_by)
                if not child.get("continue"):
                    break
        return out or [(receiver, group_by)]

    return walk(policy, policy["receiver"], tuple(policy.get("group_by", ())))


def groups(alerts: list[AlertState], policy: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], list[AlertState]]:
    """The notifications Alertmanager sends for these alerts: (receiver, group key) -> the group's alerts."""
    out: dict[tuple[str, tuple[str, ...]], list[AlertState]] = {}
    for a in alerts:
        for receiver, group_by in route(policy, a.labels):
            out.setdefault((receiver, tuple(a.labels.get(g, "") for g in group_by)), []).append(a)
    return out


__all__ = ["MISSING", "Rule", "evaluate", "groups", "notification", "route", "rules_by_uid"]
