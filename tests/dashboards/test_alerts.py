"""The provisioned alert rules' queries, run on real InfluxDB against data that should and should not fire."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from dashboards.provisioning import render
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from ingest.influxql import InfluxQL
from ingest.lineproto import Point

from .grafana_sim import evaluate_rule
from .seed import write_points

S = DashboardSettings()
RULES = {r["uid"]: r for g in yaml.safe_load(render(S)["provisioning/alerting/hailong-rules.yaml"])["groups"]
         for r in g["rules"]}
NOW_MS = int(time.time() * 1000)


def rating(centre: str, counter: str, cls: str, ago_s: float, officer: str = "o1") -> Point:
    tags = {"province": "p", "centre": centre, "counter": counter, "officer": officer, "service": "s",
            "device": f"d-{counter}", "class": cls, "walkup": "false"}
    return Point("rating", tags, {"score": 1 if cls == "not_satisfied" else 4, "ticket": "A-1"},
                 int((NOW_MS - ago_s * 1000) * 1_000_000))


def firing(db: InfluxQL, uid: str) -> tuple[str, set[tuple[tuple[str, str], ...]]]:
    state, result = evaluate_rule(db, RULES[uid], NOW_MS)
    return state, {k for k, v in result.items() if v}


@pytest.fixture
def write(influx_server: InfluxServer, influx_db: InfluxQL) -> Any:
    return lambda points: write_points(influx_server.url, influx_db.database, points)


def test_single_not_satisfied_fires_at_once_for_its_counter(influx_db: InfluxQL, write: Any) -> None:
    rule = RULES["hl-not-satisfied"]
    assert rule["data"][0]["relativeTimeRange"]["from"] <= 60 and rule["for"] == "0s"
    write([rating("c1", "q1", "not_satisfied", 20), rating("c1", "q2", "not_satisfied", 120),
           rating("c1", "q3", "satisfied", 5), rating("c1", "q3", "very_satisfied", 5)])
    assert firing(influx_db, "hl-not-satisfied") == (
        "OK", {(("centre", "c1"), ("counter", "q1"), ("officer", "o1"))})


def test_single_not_satisfied_quiet_without_complaints(influx_db: InfluxQL, write: Any) -> None:
    write([rating("c1", "q3", "satisfied", 5)])
    assert firing(influx_db, "hl-not-satisfied") == ("NoData", set())
    assert RULES["hl-not-satisfied"]["noDataState"] == "OK"


def test_three_not_satisfied_at_one_counter_in_30_min(influx_db: InfluxQL, write: Any) -> None:
    write([rating("c1", "q1", "not_satisfied", s) for s in (60, 600, 1700)]  # 3 within 30 min: fires
          + [rating("c1", "q2", "not_satisfied", s) for s in (60, 600)]  # only 2
          + [rating("c1", "q3", "not_satisfied", s) for s in (60, 600, 1900)]  # third is 31+ min old
          + [rating("c2", "q1", "not_satisfied", 60, officer=o) for o in ("o1", "o2")]
          + [rating("c2", "q1", "not_satisfied", 90, officer="o3")])  # 3 at one counter, several officers
    assert firing(influx_db, "hl-not-satisfied-3")[1] == {
        (("centre", "c1"), ("counter", "q1")), (("centre", "c2"), ("counter", "q1"))}


def test_device_offline(influx_db: InfluxQL, write: Any) -> None:
    def status(device: str, online: bool, ago_s: float) -> Point:
        return Point("device_status", {"centre": "c1", "device": device},
                     {"online": online, "outbox_depth": 0}, int((NOW_MS - ago_s * 1000) * 1_000_000))

    write([status("d1", True, 3600), status("d1", False, 900),  # went offline 15 min ago: fires
           status("d2", True, 30),  # online
           status("d3", False, 3600), status("d3", True, 60)])  # came back
    rule = RULES["hl-device-offline"]
    assert rule["for"] == "10m"
    assert firing(influx_db, "hl-device-offline")[1] == {(("centre", "c1"), ("device", "d1"))}


def test_rejected_spike(influx_db: InfluxQL, write: Any) -> None:
    def rejected(centre: str, n: int, ago_s: float) -> list[Point]:
        return [Point("rejected", {"reason": "unknown_ticket", "centre": centre}, {"topic": "t", "device": "d"},
                      int((NOW_MS - ago_s * 1000) * 1_000_000) + i) for i in range(n)]

    write(rejected("c1", S.rejected_spike, 60) + rejected("c2", S.rejected_spike - 1, 60)
          + rejected("c3", S.rejected_spike + 5, 400))
    assert firing(influx_db, "hl-rejected-spike")[1] == {(("centre", "c1"),)}


def test_ingest_stalled(influx_db: InfluxQL, write: Any) -> None:
    rule = RULES["hl-ingest-stalled"]
    assert firing(influx_db, "hl-ingest-stalled") == ("NoData", set()) and rule["noDataState"] == "Alerting"

    def stats(instance: str, written: int, in_flight: int, ago_s: float) -> Point:
        return Point("ingest_stats", {"instance": instance}, {"received": written + in_flight, "written": written,
                                                               "in_flight": in_flight},
                     int((NOW_MS - ago_s * 1000) * 1_000_000))

    write([stats("i1", 100, 5, 90), stats("i1", 180, 5, 30),  # writing: fine
           stats("i2", 100, 40, 90), stats("i2", 100, 80, 30),  # messages waiting, nothing written: stalled
           stats("i3", 100, 0, 90), stats("i3", 100, 0, 30)])  # idle, nothing to write: fine
    assert firing(influx_db, "hl-ingest-stalled") == ("OK", {(("instance", "i2"),)})
