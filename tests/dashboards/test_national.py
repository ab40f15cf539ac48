"""The national dashboard (hl-national) through Grafana's own frontend code, on a real InfluxDB
holding what the national consumer writes (national/store.py), with hand-computed numbers.

The data is built so that the wrong method gives another answer: a province's ratio is its
summed counts' ratio, never the mean of its centres' or days' ratios; two provinces tie
(shared rank 1, 1, 3); one is below the minimum sample; one has 0 %.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from broker.federation import CentreDay
from dashboards.boards_national import national_overview, render_national
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from national.store import centre_day_point, received_points, roster_points
from storage.influxql import InfluxQL
from storage.lineproto import Point

from .grafana_alerting import rules_by_uid
from .grafana_backend import TimeRange
from .grafana_frontend import show_panel
from .seed import write_points

TZ = "Asia/Ho_Chi_Minh"
ZONE = ZoneInfo(TZ)
NOW = dt.datetime(2026, 11, 19, 15, 0, tzinfo=ZONE)  # a Thursday
NOW_MS = int(NOW.timestamp() * 1000)
THIS_WEEK = [dt.date(2026, 11, 16) + dt.timedelta(days=i) for i in range(4)]  # Mon..Thu
LAST_WEEK = [dt.date(2026, 11, 9) + dt.timedelta(days=i) for i in range(7)]
LAST_REVISION = int(dt.datetime(2026, 11, 19, 14, 0, 5, tzinfo=ZONE).timestamp() * 1000)
S = DashboardSettings(national_min_sample=100)

# (province, centre, day) -> (rated, not_satisfied, served); every other centre-day of the roster is a zero day
DATA: dict[tuple[str, str, dt.date], tuple[int, int, int]] = {
    # pa: 200 rated, 20 not satisfied -> 90.0 % (its centres' ratios 50 % and ~92 % average to ~71 %)
    ("pa", "pa-1", THIS_WEEK[0]): (10, 5, 40), ("pa", "pa-2", THIS_WEEK[1]): (190, 15, 360),
    # pb: 100 / 10 -> 90.0 %: ties with pa
    ("pb", "pb-1", THIS_WEEK[2]): (60, 6, 100), ("pb", "pb-1", THIS_WEEK[3]): (40, 4, 100),
    # pc: 300 / 60 -> 80.0 % this week; 700 / 0 last week -> 94.0 % this month
    ("pc", "pc-1", THIS_WEEK[0]): (300, 60, 300), ("pc", "pc-1", LAST_WEEK[2]): (700, 0, 800),
    # pd: 50 / 0 -> 100 %, but n < 100: never ranked
    ("pd", "pd-1", THIS_WEEK[1]): (50, 0, 60),
    # pe: 1000 / 1000 -> 0.0 %
    ("pe", "pe-1", THIS_WEEK[0]): (1000, 1000, 1000),
}
ROSTER = {"pa-1": "pa", "pa-2": "pa", "pb-1": "pb", "pc-1": "pc", "pd-1": "pd", "pe-1": "pe"}


def _points() -> list[Point]:
    points = []
    for day in [*LAST_WEEK, *THIS_WEEK]:
        for centre, province in ROSTER.items():
            rated, ns, served = DATA.get((province, centre, day), (0, 0, 0))
            msg = CentreDay.build(province, centre, day.isoformat(), LAST_REVISION - (0 if day == THIS_WEEK[-1] else
                                                                                   86_400_000), rated=rated,
                                  not_satisfied=ns, satisfied=rated - ns, very_satisfied=0, walkups=0, served=served)
            if not (province == "pb" and day == THIS_WEEK[0]):  # one centre-day never arrived
                points.append(centre_day_point(msg, TZ))
        points += roster_points(ROSTER, day.isoformat(), TZ)
    return points


@pytest.fixture(scope="module")
def national_db(influx_server: InfluxServer) -> Iterator[InfluxQL]:
    db = InfluxQL(influx_server.url, "t_national_board")
    db.create_database()
    write_points(influx_server.url, db.database, _points())
    yield db
    db.drop_database()


def _panel(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    board = national_overview(S)
    j = board.to_json(S.datasource_uid)
    idx = [p.key for p in board.panels].index(key)
    return j, j["panels"][idx]


def _show(db: InfluxQL, key: str, start: dt.datetime | None = None) -> Any:
    board, panel = _panel(key)
    first = start or dt.datetime(2026, 11, 9, tzinfo=ZONE)
    return show_panel(db, board, panel, TimeRange(int(first.timestamp() * 1000), NOW_MS), NOW_MS, {}, 3_600_000)


def test_week_ranking_from_summed_counts(national_db: InfluxQL) -> None:
    shown = _show(national_db, "national.ranking_week")
    lines = [(r["Hạng"], r["Tỷ lệ hài lòng"], r["Tỉnh"], r["Đã đánh giá (n)"], r["Vé đã phục vụ"], r["Tỷ lệ phản hồi"])
             for r in shown.text]
    assert lines == [("1", "90.0%", "pa, pb", "300", "600", "50.0%"),
                     ("3", "80.0%", "pc", "300", "300", "100.0%"),
                     ("4", "0.0%", "pe", "1000", "1000", "100.0%")]


def test_month_ranking_includes_earlier_weeks(national_db: InfluxQL) -> None:
    shown = _show(national_db, "national.ranking_month")
    assert [(r["Hạng"], r["Tỷ lệ hài lòng"], r["Tỉnh"]) for r in shown.text] == [
        ("1", "94.0%", "pc"), ("2", "90.0%", "pa, pb"), ("4", "0.0%", "pe")]


def test_completeness_and_last_revision(national_db: InfluxQL) -> None:
    shown = _show(national_db, "national.completeness")
    by = {r["Tỉnh"]: r for r in shown.text}
    days = len(LAST_WEEK) + len(THIS_WEEK)
    assert by["pa"]["Ngày-trung tâm đã nhận"] == str(2 * days) and by["pa"]["Ngày-trung tâm dự kiến"] == str(2 * days)
    assert by["pa"]["Độ đầy đủ"] == "100.0%"
    assert by["pb"]["Ngày-trung tâm đã nhận"] == str(days - 1) and by["pb"]["Độ đầy đủ"] == f"{(days - 1) / days:.1%}"
    assert by["pe"]["Lần tính gần nhất"] == "2026-11-19 14:00:05"


def test_weekly_trend_is_summed_and_gaps_stay_gaps(national_db: InfluxQL) -> None:
    board, panel = _panel("national.trend")
    shown = show_panel(national_db, board, panel, TimeRange(int(dt.datetime(2026, 11, 9, tzinfo=ZONE).timestamp()
                                                                 * 1000), NOW_MS), NOW_MS, {}, 3_600_000)
    # one series per province in Grafana (time_series, alias $tag_province); the harness hands the frontend
    # InfluxDB's answer in the table format, so the rows are read here per (province, week)
    values: dict[str, dict[int, float]] = {}
    for row in shown.rows:
        values.setdefault(row["province"], {})[row["Time"]] = row["ratio"]
    monday = int(dt.datetime(2026, 11, 16, tzinfo=ZONE).timestamp() * 1000)
    last_monday = int(dt.datetime(2026, 11, 9, tzinfo=ZONE).timestamp() * 1000)
    assert values["pa"] == {monday: pytest.approx(0.9)}  # pa had nothing rated last week: a gap, not 0 %
    assert values["pc"] == {last_monday: pytest.approx(1.0), monday: pytest.approx(0.8)}
    assert values["pe"][monday] == 0.0


def test_national_build_and_silence_alert(national_db: InfluxQL, influx_server: InfluxServer) -> None:
    files = render_national(S)
    board = json.loads(files["dashboards/hl-national.json"])
    assert board["uid"] == "hl-national" and board["title"] == "Xếp hạng tỉnh"
    rules = rules_by_uid(yaml.safe_load(files["provisioning/alerting/hailong-national-rules.yaml"]))
    rule = rules["hl-national-silent"]
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    hour = 3_600_000
    # pa sends every hour; pb's last aggregate arrived 30 h ago, pc's 20 h ago
    arrivals = [received_points({"pa": 5}, (now_ms - h * hour) * 1_000_000) for h in range(0, 48)]
    arrivals += [received_points({"pb": 5}, (now_ms - h * hour) * 1_000_000) for h in range(30, 48)]
    arrivals += [received_points({"pc": 5}, (now_ms - h * hour) * 1_000_000) for h in range(20, 48)]
    db = InfluxQL(influx_server.url, "t_national_alert")
    db.create_database()
    try:
        write_points(influx_server.url, db.database, [p for batch in arrivals for p in batch])
        fired = rule.step(db, now_ms)
        assert {s.labels.get("province") for s in fired} == {"pb"}
    finally:
        db.drop_database()
