"""Issue 13: "QMS bridge quiet during opening hours", evaluated like Grafana (grafana_alerting.py) on real InfluxDB.

Each case puts "now" at a local time of a past week (Asia/Ho_Chi_Minh), seeds the ingest's
``ingest_stats`` ticks and two centres' ``ticket`` points as the ingest writes them, and evaluates
the GENERATED rule once: it fires only for the centre whose last close is more than
``qms_quiet_min`` ago while the centres are open, and never at night, on Sunday, in the first
``qms_quiet_min`` after opening, or on Saturday unless Saturday morning is configured.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from dashboards.provisioning import render
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from ingest.points import ticket_point
from ingest.tickets import Close
from storage.influxql import InfluxQL
from storage.lineproto import Point

from .grafana_alerting import rules_by_uid
from .seed import write_points

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DEFAULT = DashboardSettings()
SATURDAY = DashboardSettings.model_validate({"opening_hours": [
    {"days": "mon-fri", "opens": "07:30", "closes": "17:00"}, {"days": "sat", "opens": "07:30", "closes": "11:30"}]})
_today = datetime.now(HCM).replace(hour=0, minute=0, second=0, microsecond=0)
MONDAY = _today - timedelta(days=_today.weekday() + 14)  # a Monday two weeks back: every "now" below is past


def at(day: int, hhmm: str) -> datetime:
    """Local time on weekday ``day`` (0 = that Monday; 7 = the next Monday)."""
    h, m = hhmm.split(":")
    return MONDAY + timedelta(days=day, hours=int(h), minutes=int(m))


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def seed(now: datetime, last_close: dict[str, datetime]) -> list[Point]:
    """ingest_stats every 10 min for 6 days, and per centre closes every 20 min up to its last close."""
    points = [Point("ingest_stats", {"instance": "hl-ingest"}, {"written": i, "in_flight": 0, "held": 0},
                    ms(now - timedelta(minutes=10 * i)) * 1_000_000) for i in range(6 * 144)]
    for centre, last in last_close.items():
        for i in range(12):
            t = last - timedelta(minutes=20 * i)
            close = Close("q01", "cb-lan", "ho-tich", ms(t))
            points.append(ticket_point("hn", centre, close, f"A{i:03d}", str(ms(t)), None, 300.0))
    return points


# (case, now, last close of centre "c-quiet", settings, fires for c-quiet); centre "c-busy" closed 5 min ago
CASES = [
    ("wednesday 10:00, quiet for 40 min", at(2, "10:00"), at(2, "09:20"), DEFAULT, True),
    ("wednesday 10:00, closed 25 min ago", at(2, "10:00"), at(2, "09:35"), DEFAULT, False),
    ("wednesday 07:50: the night is no silence", at(2, "07:50"), at(1, "16:50"), DEFAULT, False),
    ("wednesday 08:05: nothing since opening", at(2, "08:05"), at(1, "16:50"), DEFAULT, True),
    ("friday 16:55, quiet since 16:00", at(4, "16:55"), at(4, "16:00"), DEFAULT, True),
    ("friday 17:05: closed", at(4, "17:05"), at(4, "16:00"), DEFAULT, False),
    ("tuesday 22:00: night", at(1, "22:00"), at(1, "16:50"), DEFAULT, False),
    ("saturday 09:00 by default: closed", at(5, "09:00"), at(4, "16:50"), DEFAULT, False),
    ("saturday 09:00 with Saturday mornings", at(5, "09:00"), at(4, "16:50"), SATURDAY, True),
    ("saturday 12:00 with Saturday mornings", at(5, "12:00"), at(5, "11:00"), SATURDAY, False),
    ("sunday 10:00: closed", at(6, "10:00"), at(5, "11:00"), SATURDAY, False),
    ("monday 08:10 after the weekend", at(7, "08:10"), at(4, "16:55"), DEFAULT, True),
]


@pytest.mark.parametrize(("now", "last", "settings", "fires"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_qms_bridge_quiet_only_during_opening_hours(influx_server: InfluxServer, influx_db: InfluxQL, now: datetime,
                                                   last: datetime, settings: DashboardSettings, fires: bool) -> None:
    busy = now - timedelta(minutes=5)
    write_points(influx_server.url, influx_db.database, seed(now, {"c-quiet": last, "c-busy": busy}))
    rules: dict[str, Any] = rules_by_uid(yaml.safe_load(render(settings)["provisioning/alerting/hailong-rules.yaml"]))
    rule = rules["hl-qms-quiet"]
    fired = rule.step(influx_db, ms(now))
    assert [st.labels["centre"] for st in fired] == (["c-quiet"] if fires else [])
    assert all(st.state in ("Normal", "Alerting") for st in rule.states.values()), rule.states
    if fires:
        assert fired[0].annotations["summary"] == \
            f"Không có sự kiện QMS từ trung tâm c-quiet trong {settings.qms_quiet_min} phút (giờ làm việc)"
        assert "[no value]" not in fired[0].annotations["description"]


def test_no_centre_with_a_queue_system_is_no_alert(influx_server: InfluxServer, influx_db: InfluxQL) -> None:
    now = at(2, "10:00")
    write_points(influx_server.url, influx_db.database, seed(now, {}))
    rule = rules_by_uid(yaml.safe_load(render(DEFAULT)["provisioning/alerting/hailong-rules.yaml"]))["hl-qms-quiet"]
    assert rule.step(influx_db, ms(now)) == [] and not rule.firing()


def test_opening_hours_are_checked_at_load() -> None:
    for bad in ({"days": "sun-mon"}, {"opens": "7:30"}, {"opens": "17:00", "closes": "07:30"}):
        with pytest.raises(ValueError, match="opening_hours"):
            DashboardSettings.model_validate({"opening_hours": [bad]})
