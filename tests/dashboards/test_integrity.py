"""Integrity panels at their edges (issue 15 findings 6, 8, 9): 0 % and 100 % rows, walk-up-only
counters, runs across a shift change, terminal/QMS disagreement, rejections under every variable.

Queries run on real InfluxDB and through Grafana's own frontend code (@grafana/data: transformations and display).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from dashboards.boards_integrity import integrity
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from ingest.points import rejected_point
from storage.influxql import InfluxQL
from storage.lineproto import Point

from .grafana_backend import TimeRange
from .grafana_frontend import Shown as Table
from .grafana_frontend import show_panel
from .readable import audit
from .seed import write_points

S = DashboardSettings(top_run_length=15)
NOW_MS = int(time.time() * 1000)
RANGE = TimeRange(NOW_MS - 86_400_000, NOW_MS)
BOARD = integrity(S)
JS = BOARD.to_json(S.datasource_uid)


def rating(i: int, counter: str, officer: str, *, score: int = 4, response_ms: int | None = 5000,
           walkup: bool = False, terminal_officer: str = "", centre: str = "c1", province: str = "p1",
           service: str = "s1") -> Point:
    fields: dict[str, Any] = {"score": score, "scale": 4, "event_id": f"e{i}"}
    if not walkup:
        fields["ticket"] = f"A{i}"
        if response_ms is not None:
            fields["response_ms"] = response_ms
    if terminal_officer:
        fields["terminal_officer"] = terminal_officer
    tags = {"province": province, "centre": centre, "counter": counter, "officer": officer, "service": service,
            "device": f"d-{counter}", "class": "very_satisfied" if score == 4 else "not_satisfied",
            "walkup": "true" if walkup else "false"}
    return Point("rating", tags, fields, (NOW_MS - 3_600_000 + i * 1000) * 1_000_000)


def points() -> list[Point]:
    out, i = [], 0

    def add(n: int, counter: str, officer: str, **kw: Any) -> None:
        nonlocal i
        for _ in range(n):
            i += 1
            out.append(rating(i, counter, officer, **kw))

    add(4, "q1", "o-fast", response_ms=300)  # every rating < 1 s after close: 100 %
    add(3, "q2", "o-slow", response_ms=4000, score=1)  # none fast: 0 %
    add(5, "q3", "o-walk", walkup=True, score=1)  # walk-ups only: 100 % walk-up
    add(10, "q4", "o-a")  # a shift change at q4: 10 top scores by o-a, then 10 by o-b
    add(10, "q4", "o-b")
    add(16, "q5", "o-run")  # one officer's run of 16: 2 windows of 15
    add(2, "q6", "o-qms", terminal_officer="o-claimed", response_ms=2000, score=1)
    add(2, "q6", "o-qms", response_ms=2000, score=1)
    add(2, "q7", "o-x", response_ms=2000, score=1, centre="c2", province="p2", service="s2")
    for j, (centre, counter, officer, service, province) in enumerate(
            [("c1", "q1", "o-fast", "s1", "p1"), ("c1", "q6", "o-qms", "s1", "p1"), ("c2", "q7", "o-x", "s2", "p2")]):
        for k in range(j + 1):
            # the ingest's own rejected point (tags from the registry and the payload), pretty-printed payload
            out.append(rejected_point("duplicate_ticket", centre, "t", f"d-{counter}", b'{\n "pretty": true\n}',
                                      "test", (NOW_MS - 600_000) * 1_000_000 + j * 10 + k, counter=counter,
                                      province=province, officer=officer, service=service))
    return out


@pytest.fixture
def db(influx_server: InfluxServer, influx_db: InfluxQL) -> InfluxQL:
    write_points(influx_server.url, influx_db.database, points())
    return influx_db


def show(db: InfluxQL, key: str, sel: dict[str, list[str] | None] | None = None) -> Table:
    panel = next(p for spec, p in zip(BOARD.panels, JS["panels"], strict=True) if spec.key == key)
    shown = show_panel(db, JS, panel, RANGE, NOW_MS, sel or {})
    assert audit(f"{key} {sel}", panel, shown) >= 0  # every displayed cell in a readable form
    return shown


def by(table: Table, *cols: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[c] for c in cols): r for r in table.rows}


def text_by(table: Table, *cols: str) -> dict[tuple[Any, ...], dict[str, str]]:
    return {tuple(r[c] for c in cols): t for r, t in zip(table.rows, table.text, strict=True)}


def test_fast_share_is_100_and_0_percent_not_nan(db: InfluxQL) -> None:
    rows = text_by(show(db, "integrity.fast"), "Cán bộ")
    assert rows[("o-fast",)]["Tỷ lệ dưới 1 giây"] == "100.0%" and rows[("o-fast",)]["Dưới 1 giây"] == "4"
    assert rows[("o-slow",)]["Tỷ lệ dưới 1 giây"] == "0.0%" and rows[("o-slow",)]["Dưới 1 giây"] == "0"
    only = show(db, "integrity.fast", {"officer": ["o-fast"]})  # the columns stay with one officer selected
    assert [(r["Cán bộ"], r["Tỷ lệ dưới 1 giây"]) for r in only.text] == [("o-fast", "100.0%")]


def test_walkup_only_counter_is_100_percent(db: InfluxQL) -> None:
    rows = text_by(show(db, "integrity.walkup"), "Quầy")
    assert (rows[("q3",)]["Không vé"], rows[("q3",)]["Tỷ lệ không vé"]) == ("5", "100.0%")
    assert (rows[("q1",)]["Không vé"], rows[("q1",)]["Tỷ lệ không vé"]) == ("0", "0.0%")
    alone = show(db, "integrity.walkup", {"counter": ["q3"]})
    assert [(r["Quầy"], r["Tỷ lệ không vé"]) for r in alone.text] == [("q3", "100.0%")]


def test_top_runs_are_per_officer(db: InfluxQL) -> None:
    rows = {k: r["Số cửa sổ"] for k, r in by(show(db, "integrity.top_runs"), "Cán bộ").items()}
    assert rows == {("o-run",): 16 - 15 + 1}, "10 + 10 by two officers at q4 is no run of 15"


def test_terminal_qms_disagreement(db: InfluxQL) -> None:
    rows = text_by(show(db, "integrity.disagreement"), "Quầy", "Cán bộ (theo QMS)")
    assert set(rows) == {("q6", "o-qms")}
    assert (rows[("q6", "o-qms")]["Khác cán bộ"], rows[("q6", "o-qms")]["Tỷ lệ khác"]) == ("2", "50.0%")


@pytest.mark.parametrize(("var", "value", "want"), [
    (None, None, {("q1", "d-q1"): 1, ("q6", "d-q6"): 2, ("q7", "d-q7"): 3}),
    ("province", "p2", {("q7", "d-q7"): 3}), ("centre", "c1", {("q1", "d-q1"): 1, ("q6", "d-q6"): 2}),
    ("counter", "q6", {("q6", "d-q6"): 2}), ("officer", "o-fast", {("q1", "d-q1"): 1}),
    ("service", "s2", {("q7", "d-q7"): 3})])
def test_rejections_follow_every_variable(db: InfluxQL, var: str | None, value: str | None,
                                          want: dict[tuple[str, str], int]) -> None:
    table = show(db, "integrity.ticket_rejections", {var: [value]} if var and value else {})
    assert {(r["Quầy"], r["Thiết bị"]): r["Số lần"] for r in table.rows} == want


@pytest.mark.parametrize("sel", [{}, {"officer": ["o-fast"]}, {"counter": ["q3"]}, {"officer": ["o-walk"]},
                                 {"province": ["p2"]}])
def test_no_nan_anywhere(db: InfluxQL, sel: dict[str, list[str] | None]) -> None:
    for spec in BOARD.panels:
        shown = show(db, spec.key, sel)
        for row, text in zip(shown.rows, shown.text, strict=True):
            for col, v in row.items():
                assert not (isinstance(v, float) and math.isnan(v)), (spec.key, sel, col, row)
                assert v is not None or col in ("Quầy",), (spec.key, sel, col, row)
                assert text[col] not in ("NaN", "—") and (text[col] or col == "Quầy"), (spec.key, sel, col, text)
