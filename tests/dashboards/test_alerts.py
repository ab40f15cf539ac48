"""The GENERATED alert rules, evaluated like Grafana's alerting (grafana_alerting.py) on real InfluxDB.

Points are seeded in the agreed shapes (PREAMBLE: escalation, device_status, rejected,
ingest_stats); each test drives one finding of issue 15 through the rules over time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.boards import centre_overview
from dashboards.provisioning import NOTIFY_MESSAGE, NOTIFY_SUBJECT, render
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL
from storage.lineproto import Point

from .grafana_alerting import Rule, groups, notification, rules_by_uid
from .seed import write_points

S = DashboardSettings()
RULES_YAML = yaml.safe_load(render(S)["provisioning/alerting/hailong-rules.yaml"])
NOW_MS = int(time.time() * 1000)
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "escalation_email.txt"


def ns(ago_s: float) -> int:
    return int((NOW_MS - ago_s * 1000) * 1_000_000)


def escalation(counter: str = "q1", arrived_ago_s: float = 3, *, centre: str = "c-ba", officer: str = "o-an",
               officer_name: str = "Nguyễn Văn An", ticket: str = "A012", rated_local: str = "2026-11-20 09:14:03",
               reasons: str = "thai_do,thoi_gian_cho", walkup: bool = False) -> Point:
    """The escalation point exactly as the ingest writes it (empty tags are dropped by the writer)."""
    tags = {"province": "hn", "centre": centre, "counter": counter, "officer": officer, "device": f"d-{counter}",
            "service": "ho-tich", "ticket": ticket, "centre_name": "Ba Đình", "counter_label": f"Quầy {counter[1:]}",
            "officer_name": officer_name, "rated_local": rated_local, "reasons": reasons}
    return Point("escalation", tags, {"score": 1, "scale": 4, "event_id": f"e-{counter}-{ticket}-{arrived_ago_s}",
                                      "rated_at_ms": NOW_MS - 90_000, "walkup": walkup}, ns(arrived_ago_s))


@pytest.fixture
def rules() -> dict[str, Rule]:
    return rules_by_uid(RULES_YAML)


@pytest.fixture
def write(influx_server: InfluxServer, influx_db: InfluxQL) -> Any:
    return lambda points: write_points(influx_server.url, influx_db.database, points)


def run(rule: Rule, db: InfluxQL, start_ago_s: float, end_ago_s: float = 0) -> list[Any]:
    """Evaluate at every interval from ``start_ago_s`` to ``end_ago_s`` before now; all transitions to Alerting."""
    fired = []
    t = NOW_MS - int(start_ago_s * 1000)
    while t <= NOW_MS - int(end_ago_s * 1000):
        fired += rule.step(db, t)
        t += rule.interval_ms
    return fired


def keys(states: list[Any], *names: str) -> set[tuple[str, ...]]:
    return {tuple(s.labels.get(n, "") for n in names) for s in states}


def assert_readable(text: str) -> None:
    assert "[no value]" not in text and "<no value>" not in text and "{{" not in text, text


# ---------------------------------------------------------------------------------------------- static

def test_every_template_uses_only_grouped_labels() -> None:
    for group in RULES_YAML["groups"]:
        for rule in group["rules"]:
            queries = [d["model"]["query"] for d in rule["data"] if d["datasourceUid"] != "__expr__"]
            # a query grouped by no tag (hl-qms-quiet's clocks) gives label-less numbers, which Grafana's
            # union pairs with every series: it adds no label and takes none away
            sets = [tags for q in queries if (tags := set(re.findall(r'"(\w+)"', q.rsplit("GROUP BY", 1)[1])))]
            # nested label sets (a count per counter beside one series per complaint): Grafana's union
            # joins each series to the count whose labels it contains, and the result has the larger set
            nested = all(a <= b or b <= a for a in sets for b in sets)
            grouped = set.union(*sets) if nested else set.intersection(*sets)
            for name, text in rule["annotations"].items():
                used = set(re.findall(r"\$labels\.(\w+)", text))
                assert used <= grouped, (rule["uid"], name, used - grouped)
            if rule["noDataState"] == "Alerting":  # a NoData alert carries no query labels: guarded by if
                assert all(f"if $labels.{u}" in t for t in rule["annotations"].values()
                           for u in re.findall(r"\$labels\.(\w+)", t))


# ---------------------------------------------------------------------------------------------- escalation

def test_single_not_satisfied_escalates_once_keyed_on_arrival(influx_db: InfluxQL, write: Any,
                                                              rules: dict[str, Rule]) -> None:
    rule = rules["hl-not-satisfied"]
    assert rule.rule["for"] == "0s" and rule.interval_ms == 10_000
    # rated 90 s before it arrived (clock behind or a reconnect): the arrival time is what counts
    write([escalation("q1", arrived_ago_s=3, rated_local="2026-11-20 09:12:33")])
    fired = run(rule, influx_db, start_ago_s=60)
    assert keys(fired, "counter", "ticket") == {("q1", "A012")}, "once, at the first evaluation after arrival"
    assert fired[0].started_at_ms >= NOW_MS - 3000 - rule.interval_ms
    # still firing in later evaluations but never notified again; resolved after the window
    later = run(rule, influx_db, start_ago_s=-10, end_ago_s=-400)
    assert later == [] and rule.firing() == [] and fired[0].resolved_at_ms is not None


def test_escalation_text_names_everything_a_supervisor_needs(influx_db: InfluxQL, write: Any,
                                                             rules: dict[str, Rule]) -> None:
    write([escalation("q1")])
    (st,) = rules["hl-not-satisfied"].step(influx_db, NOW_MS)
    summary, description = st.annotations["summary"], st.annotations["description"]
    for text in (summary, description):
        assert_readable(text)
    reasons = "Thái độ cán bộ, Thời gian chờ lâu"  # the terminal's own labels (broker.contract)
    for needed in ("Ba Đình", "Quầy 1", "Nguyễn Văn An", "A012", "2026-11-20 09:14:03", reasons):
        assert needed in description, needed
    uid = centre_overview(S).uid
    assert f"/d/{uid}?orgId=1&var-province=hn&var-centre=c-ba&var-counter=q1" in description
    subject, message = notification([st], NOTIFY_SUBJECT + NOTIFY_MESSAGE, '{{ template "hailong.subject" . }}',
                                    '{{ template "hailong.message" . }}')
    assert_readable(subject + message)
    assert subject == "[hailong] Không hài lòng — báo ngay cho giám sát" and message.startswith(summary)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(f"Subject: {subject}\n\n{message}", encoding="utf-8")


def test_walkup_escalation_never_names_an_unverified_officer(influx_db: InfluxQL, write: Any,
                                                             rules: dict[str, Rule]) -> None:
    # the ingest writes officer "" for an unverified walk-up claim and no ticket, no reasons
    write([escalation("q2", officer="", officer_name="", ticket="", reasons="", walkup=True)])
    (st,) = rules["hl-not-satisfied"].step(influx_db, NOW_MS)
    d = st.annotations["description"]
    assert_readable(d + st.annotations["summary"])
    assert "Cán bộ: chưa xác định" in d and "Vé: không có vé" in d and "Lý do: không chọn lý do" in d


def test_two_escalations_at_one_counter_are_two_alerts(influx_db: InfluxQL, write: Any,
                                                       rules: dict[str, Rule]) -> None:
    write([escalation("q1", 5, ticket="A012"), escalation("q1", 4, ticket="A013"), escalation("q3", 4, ticket="")])
    fired = rules["hl-not-satisfied"].step(influx_db, NOW_MS)
    assert keys(fired, "counter", "ticket") == {("q1", "A012"), ("q1", "A013"), ("q3", "")}


def complaint(counter: str, tapped_ago_s: float, *, officer: str = "o-an", officer_name: str = "Nguyễn Văn An",
              ticket: str = "A012", centre: str = "c-ba") -> Point:
    """The ``complaint`` point as the ingest writes it: the escalation's shape, stamped at the tap."""
    p = escalation(counter, tapped_ago_s, centre=centre, officer=officer, officer_name=officer_name, ticket=ticket)
    rated = NOW_MS - int(tapped_ago_s * 1000)
    tags = {**p.tags, "rated_local": f"tap-{tapped_ago_s}"}
    return Point("complaint", tags, {**p.fields, "rated_at_ms": rated}, ns(tapped_ago_s))


def burst_messages(fired: list[Any]) -> dict[tuple[str, tuple[str, ...]], str]:
    """The notifications of the fired burst instances, as the provisioned policy groups them."""
    policy = yaml.safe_load(render(S)["provisioning/alerting/hailong-contact-points.yaml"])["policies"][0]
    return {key: notification(alerts, NOTIFY_SUBJECT + NOTIFY_MESSAGE, '{{ template "hailong.subject" . }}',
                              '{{ template "hailong.message" . }}')[1]
            for key, alerts in groups(fired, policy).items()}


def test_three_complaints_tapped_at_one_counter_in_30_min(influx_db: InfluxQL, write: Any,
                                                          rules: dict[str, Rule]) -> None:
    officers = {"o1": "Lê Thị Lan", "o2": "Trần Văn Bình", "o3": "Phạm Thu Hà"}
    write([complaint("q1", s, ticket=f"A{s}") for s in (60, 600, 1700)]  # 3 tapped within 30 min: fires
          + [complaint("q2", s, ticket=f"B{s}") for s in (60, 600)]  # only 2
          + [complaint("q3", s, ticket=f"C{s}") for s in (60, 600, 1900)]  # third tapped 31+ min ago
          + [complaint("q4", 60, officer=o, officer_name=n, ticket=f"D{o}") for o, n in officers.items()])
    fired = rules["hl-not-satisfied-3"].step(influx_db, NOW_MS)
    assert keys(fired, "counter") == {("q1",), ("q4",)}
    assert keys(fired, "counter", "ticket") == {("q1", "A60"), ("q1", "A600"), ("q1", "A1700"), ("q4", "Do1"),
                                                ("q4", "Do2"), ("q4", "Do3")}, "one instance per complaint"
    for st in fired:
        assert_readable(st.annotations["summary"] + st.annotations["description"])
        assert st.annotations["summary"].startswith("3 lượt Không hài lòng") and "Ba Đình" in st.annotations["summary"]
    messages = burst_messages(fired)
    assert len(messages) == 2, "one notification per counter"
    q4 = next(m for (_, key), m in messages.items() if "q4" in key)
    for officer, name in officers.items():  # every officer involved, with the ticket
        assert f"{name} ({officer})" in q4 and f"vé D{officer}" in q4, (officer, q4)


def test_a_backlog_of_old_taps_is_no_burst(influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    """Three complaints tapped 35, 10 and 0 minutes ago, delivered together after an outage: by tap time
    only two fall in the 30 minutes, so no burst."""
    write([complaint("q1", s, ticket=f"A{s}") for s in (35 * 60, 10 * 60, 0)])
    assert rules["hl-not-satisfied-3"].step(influx_db, NOW_MS) == []


def test_a_burst_ends_when_its_oldest_tap_leaves_the_30_minutes(influx_db: InfluxQL, write: Any,
                                                                rules: dict[str, Rule]) -> None:
    rule = rules["hl-not-satisfied-3"]
    write([complaint("q1", s, ticket=f"A{s}") for s in (25 * 60, 10 * 60, 0)])
    assert len(rule.step(influx_db, NOW_MS)) == 3
    for _ in run(rule, influx_db, start_ago_s=-10, end_ago_s=-6 * 60):
        raise AssertionError("no new burst while the oldest tap ages")
    assert rule.firing() == [], "6 minutes later the oldest tap is 31 minutes old: resolved"


def test_no_escalation_no_alert(influx_db: InfluxQL, rules: dict[str, Rule]) -> None:
    rule = rules["hl-not-satisfied"]
    assert rule.step(influx_db, NOW_MS) == [] and rule.rule["noDataState"] == "OK"
    assert [(s.state, s.labels["ref_id"]) for s in rule.states.values()] == [("Normal", "A")]


# ---------------------------------------------------------------------------------------------- devices

def status(device: str, online: bool, ago_s: float) -> Point:
    return Point("device_status", {"centre": "c1", "device": device},
                 {"online": online, "outbox_depth": 0, "uptime_s": 5}, ns(ago_s))


def heartbeats(device: str, from_ago_s: float, to_ago_s: float, online: bool = True) -> list[Point]:
    return [status(device, online, t) for t in range(int(from_ago_s), int(to_ago_s) - 1, -60)]


def test_device_offline_by_last_will(influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    write([status("d1", True, 3600), status("d1", False, 900),  # last will 15 min ago: fires
           status("d2", True, 30),  # online
           status("d3", False, 3600), status("d3", True, 60)])  # came back
    rule = rules["hl-device-offline"]
    assert rule.rule["for"] == "10m"
    fired = run(rule, influx_db, start_ago_s=660)
    assert keys(fired, "device") == {("d1",)}
    assert_readable(fired[0].annotations["summary"] + fired[0].annotations["description"])


def test_device_silent_without_last_will(influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    write(heartbeats("hung", 3600, 16 * 60)  # last said online 16 min ago, then nothing
          + heartbeats("ok", 3600, 30)  # heartbeat every minute
          + heartbeats("lwt", 3600, 20 * 60) + [status("lwt", False, 19 * 60)]  # reported by the last-will rule
          + heartbeats("recent", 3600, 5 * 60))  # 5 min silent: not yet
    rule = rules["hl-device-silent"]
    fired = run(rule, influx_db, start_ago_s=120)
    assert keys(fired, "device") == {("hung",)}
    assert "không gửi trạng thái nào trong hơn 10 phút" in fired[0].annotations["description"]
    assert_readable(fired[0].annotations["summary"] + fired[0].annotations["description"])


# ---------------------------------------------------------------------------------------------- rejections

def test_rejected_spike_names_the_terminal_and_the_reason(influx_db: InfluxQL, write: Any,
                                                           rules: dict[str, Rule]) -> None:
    def rejected(centre: str, n: int, ago_s: float, device: str = "d", reason: str = "unknown_ticket") -> list[Point]:
        return [Point("rejected", {"reason": reason, "centre": centre, "counter": "q1", "device": device},
                      {"topic": "t", "payload": "{}"}, ns(ago_s) + i) for i in range(n)]

    write(rejected("c1", S.rejected_spike, 60, "d-c1-q3", "wrong_counter") + rejected("c2", S.rejected_spike - 1, 60)
          + rejected("c3", S.rejected_spike + 5, 400)
          + rejected("c4", S.rejected_spike - 2, 60, "d-c4-q1", "wrong_counter") + rejected("c4", 2, 30, "d-c4-q2"))
    fired = rules["hl-rejected-spike"].step(influx_db, NOW_MS)
    assert keys(fired, "centre") == {("c1",), ("c4",)}
    assert keys(fired, "centre", "device", "reason") == {("c1", "d-c1-q3", "wrong_counter"),
                                                         ("c4", "d-c4-q1", "wrong_counter"),
                                                         ("c4", "d-c4-q2", "unknown_ticket")}
    c1 = next(st for st in fired if st.labels["centre"] == "c1")
    assert c1.annotations["summary"] == (f"{S.rejected_spike} bản tin bị từ chối trong 5 phút tại trung tâm c1 — "
                                         f"thiết bị d-c1-q3: {S.rejected_spike} × wrong_counter")
    for st in fired:
        assert_readable(st.annotations["summary"] + st.annotations["description"])
        assert st.labels["device"] in st.annotations["description"] and st.labels["reason"] in st.annotations[
            "description"]


# ---------------------------------------------------------------------------------------------- late complaints

def late(counter: str, ticket: str, late_by: str, *, centre: str = "c-ba", arrived_ago_s: float = 3,
         officer: str = "o-an", officer_name: str = "Nguyễn Văn An") -> Point:
    """The ``late_escalation`` point as the ingest writes it (the escalation's shape plus how late)."""
    p = escalation(counter, arrived_ago_s, centre=centre, officer=officer, officer_name=officer_name, ticket=ticket)
    return Point("late_escalation", {**p.tags, "late_by": late_by},
                 {**p.fields, "event_id": f"late-{counter}-{ticket}", "late_s": 7200}, ns(arrived_ago_s))


def test_an_outage_backlog_of_late_complaints_is_one_message_per_centre(influx_db: InfluxQL, write: Any,
                                                                        rules: dict[str, Rule]) -> None:
    rule = rules["hl-not-satisfied-late"]
    assert rule.rule["labels"]["severity"] == "warning", "lower than the live page (critical)"
    backlog = [late(f"q{i % 3 + 1}", f"A{i:03d}", f"2 giờ {i:02d} phút") for i in range(12)]
    write([*backlog, late("q1", "Z001", "1 giờ 10 phút", centre="c-hk")])
    fired = rule.step(influx_db, NOW_MS)
    assert len(fired) == 13
    policy = yaml.safe_load(render(S)["provisioning/alerting/hailong-contact-points.yaml"])["policies"][0]
    sent = groups(fired, policy)
    assert sorted(len(a) for a in sent.values()) == [1, 12], "one message per centre, not one per complaint"
    (ba,) = [a for a in sent.values() if len(a) == 12]
    subject, message = notification(ba, NOTIFY_SUBJECT + NOTIFY_MESSAGE, '{{ template "hailong.subject" . }}',
                                    '{{ template "hailong.message" . }}')
    assert_readable(subject + message)
    assert subject == "[hailong] Không hài lòng nhận muộn"
    for i in range(12):  # every late complaint listed with counter, officer, ticket, tap time and lateness
        line = next(ln for ln in message.splitlines() if f"vé A{i:03d}" in ln)
        assert f"Quầy {i % 3 + 1}" in line and "Nguyễn Văn An (o-an)" in line and "Ba Đình" in line, line
        assert "đánh giá lúc 2026-11-20 09:14:03" in line and f"nhận muộn 2 giờ {i:02d} phút" in line, line
    assert rule.step(influx_db, NOW_MS + 10_000) == [], "told once"


def test_a_web_complaint_is_told_as_post_visit_not_as_a_terminal_that_lost_its_connection(
        influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    """The same rule tells a late terminal complaint and a phone's "Không hài lòng" apart by the device tag."""
    rule = rules["hl-not-satisfied-late"]
    terminal = late("q1", "A001", "2 giờ 05 phút")
    phone = late("q2", "A002", "2 ngày 3 giờ sau khi được phục vụ, qua điện thoại")
    phone = phone._replace(tags={**phone.tags, "device": "web"})
    write([terminal, phone])
    fired = {st.labels["ticket"]: st for st in rule.step(influx_db, NOW_MS)}
    assert sorted(fired) == ["A001", "A002"]
    web, counter = fired["A002"].annotations, fired["A001"].annotations
    assert_readable(web["summary"] + web["description"] + counter["summary"] + counter["description"])
    assert web["summary"].endswith("· 2 ngày 3 giờ sau khi được phục vụ, qua điện thoại"), web["summary"]
    assert "· nhận muộn" not in web["summary"] and "mất kết nối" not in web["description"], web
    assert "không báo khẩn" in web["description"] and "Quầy 2" in web["summary"], web
    assert counter["summary"].endswith("· nhận muộn 2 giờ 05 phút"), counter["summary"]
    assert "mất kết nối" in counter["description"] and "không báo khẩn" not in counter["description"], counter


# ---------------------------------------------------------------------------------------------- ingest

def stats(instance: str, written: int, in_flight: int, held: int, ago_s: float) -> Point:
    return Point("ingest_stats", {"instance": instance},
                 {"received": written + in_flight, "written": written, "in_flight": in_flight, "held": held},
                 ns(ago_s))


def every_30s(instance: str, from_ago_s: int, to_ago_s: int, written: Any, in_flight: int, held: int) -> list[Point]:
    return [stats(instance, written(t), in_flight, held, t) for t in range(from_ago_s, to_ago_s - 1, -30)]


def test_ingest_stalled_per_instance_without_false_alarms(influx_db: InfluxQL, write: Any,
                                                          rules: dict[str, Rule]) -> None:
    write(every_30s("writing", 900, 0, lambda t: 10_000 - t, 5, 0)
          + every_30s("stalled", 900, 0, lambda t: 100, 40, 0)  # messages wait, nothing written
          + every_30s("quiet", 900, 0, lambda t: 100, 1, 1)  # holds one rating for its ticket_closed
          + every_30s("idle", 900, 0, lambda t: 100, 0, 0))
    rule = rules["hl-ingest-stalled"]
    assert rule.rule["for"] != "0s"
    fired = run(rule, influx_db, start_ago_s=180)
    assert keys(fired, "instance") == {("stalled",)}
    assert_readable(fired[0].annotations["description"])
    assert "ít nhất 40 bản tin chờ" in fired[0].annotations["description"]
    assert run(rules["hl-ingest-vanished"], influx_db, start_ago_s=180) == []


def test_ingest_single_sample_is_not_a_stall(influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    write([stats("fresh", 0, 3, 0, 10)])  # one stats point so far: spread is 0 by definition
    assert run(rules["hl-ingest-stalled"], influx_db, start_ago_s=120) == []


def test_ingest_instance_that_vanished(influx_db: InfluxQL, write: Any, rules: dict[str, Rule]) -> None:
    write(every_30s("alive", 3600, 0, lambda t: 10_000 - t, 0, 0)
          + every_30s("dead", 3600, 240, lambda t: 10_000 - t, 0, 0))  # stats stopped 4 min ago
    fired = run(rules["hl-ingest-vanished"], influx_db, start_ago_s=60)
    assert keys(fired, "instance") == {("dead",)}
    assert fired[0].annotations["summary"] == "Ingest dead mất tín hiệu"


def test_no_ingest_at_all_is_an_alert(influx_db: InfluxQL, rules: dict[str, Rule]) -> None:
    rule = rules["hl-ingest-vanished"]
    (st,) = rule.step(influx_db, NOW_MS)
    assert st.labels["ref_id"] == "A" and st.annotations["summary"] == "Không có ingest nào hoạt động"
    assert_readable(st.annotations["description"])
