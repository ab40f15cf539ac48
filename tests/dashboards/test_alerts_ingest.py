"""The escalation end to end: a "Không hài lòng" through Mosquitto and the REAL ingest, then the
generated rules evaluated on what the ingest wrote (no seeded escalation points here), and the
integrity board's late-complaint panel displayed by Grafana's own frontend code."""

from __future__ import annotations

import time
import uuid

import yaml

from broker.contract import qms_topic, rating_topic
from broker.mqtt.settings import MqttSettings
from dashboards.boards_integrity import integrity
from dashboards.provisioning import NOTIFY_MESSAGE, NOTIFY_SUBJECT, render
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer, MosquittoServer
from ingest.registry import local_time
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms, publish_all, rating, start_ingest, ticket_closed
from tests.support.waiting import wait_until

from .grafana_alerting import groups, notification, rules_by_uid
from .grafana_backend import TimeRange
from .grafana_frontend import show_panel


def test_late_not_satisfied_escalates_once_through_the_real_ingest(
        mosquitto: MosquittoServer, influx_server: InfluxServer, influx_db: InfluxQL) -> None:
    uid = uuid.uuid4().hex[:6]
    mqtt = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{mosquitto.port}",
                                        "username": mosquitto.username, "password": mosquitto.password})
    centre, device = f"ce{uid}", f"dv{uid}"
    svc = start_ingest(mqtt, influx_db, uid, fleet=TFleet().add(TCentre(centre), TDevice(device, centre, "q1")))
    try:
        # the terminal's clock is 90 s behind: rated_at and closed_at both 90 s in the past
        behind = now_ms() - 90_000
        close = ticket_closed("q1", "cb1", "A012", at=behind - 2000)
        event = rating(centre, device, "q1", "cb1", "A012", 1, score=1, reasons=["thai_do"],
                       closed_at=behind - 2000, rated_at=behind, sent_at=behind)
        msgs = [(qms_topic(centre, "q1"), close.to_json()), (rating_topic(centre, device), event.to_json())]
        publish_all(mqtt, f"pub-{uid}", msgs)
        publish_all(mqtt, f"pub2-{uid}", msgs[1:])  # a redelivery: never a second escalation
        wait_until(lambda: influx_db.rows('SELECT * FROM "rating"'), timeout=15, what="the rating stored")
        rows = wait_until(lambda: influx_db.rows('SELECT * FROM "escalation"'), timeout=5, what="escalation point")
        time.sleep(1)
        assert len(influx_db.rows('SELECT * FROM "escalation"')) == 1, rows
        rules = rules_by_uid(yaml.safe_load(render(DashboardSettings())["provisioning/alerting/hailong-rules.yaml"]))
        rule = rules["hl-not-satisfied"]
        fired = rule.step(influx_db, now_ms())
        assert [(s.labels["centre"], s.labels["counter"], s.labels["ticket"]) for s in fired] == [
            (centre, "q1", "A012")]
        assert rule.step(influx_db, now_ms() + 10_000) == [], "notified once"
        text = fired[0].annotations["description"]
        assert "[no value]" not in text and "A012" in text and "Thái độ" in text
    finally:
        svc.stop()


def test_a_complaint_two_hours_late_is_told_once_as_late(
        mosquitto: MosquittoServer, influx_server: InfluxServer, influx_db: InfluxQL) -> None:
    """A terminal's outbox drains 2 h after a "Không hài lòng" was tapped: no urgent page, one late
    notification naming the centre, counter, officer, ticket, the tap's local time and how late."""
    uid = uuid.uuid4().hex[:6]
    mqtt = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{mosquitto.port}",
                                        "username": mosquitto.username, "password": mosquitto.password})
    centre, device = f"ce{uid}", f"dv{uid}"
    fleet = TFleet().add(TCentre(centre), TDevice(device, centre, "q2"))
    svc = start_ingest(mqtt, influx_db, uid, fleet=fleet)
    try:
        tapped = now_ms() - 2 * 3600_000 - 5 * 60_000
        close = ticket_closed("q2", "cb2", "B077", at=tapped - 3000)
        event = rating(centre, device, "q2", "cb2", "B077", 1, score=1, reasons=["thu_tuc"],
                       closed_at=tapped - 3000, rated_at=tapped, sent_at=now_ms())
        publish_all(mqtt, f"pub-{uid}", [(qms_topic(centre, "q2"), close.to_json()),
                                          (rating_topic(centre, device), event.to_json())])
        wait_until(lambda: influx_db.rows('SELECT * FROM "late_escalation"'), timeout=15, what="the late point")
        assert influx_db.rows('SELECT * FROM "escalation"') == [], "no urgent page"
        s = DashboardSettings()
        rules = rules_by_uid(yaml.safe_load(render(s)["provisioning/alerting/hailong-rules.yaml"]))
        assert rules["hl-not-satisfied"].step(influx_db, now_ms()) == []
        late_rule = rules["hl-not-satisfied-late"]
        fired = late_rule.step(influx_db, now_ms())
        policy = yaml.safe_load(render(s)["provisioning/alerting/hailong-contact-points.yaml"])["policies"][0]
        (alerts,) = groups(fired, policy).values()
        subject, message = notification(alerts, NOTIFY_SUBJECT + NOTIFY_MESSAGE, '{{ template "hailong.subject" . }}',
                                        '{{ template "hailong.message" . }}')
        when = local_time(tapped, s.timezone)
        assert subject == "[hailong] Không hài lòng nhận muộn"
        assert "[no value]" not in message and "vé B077" in message and f"đánh giá lúc {when}" in message, message
        assert "nhận muộn 2 giờ 05 phút" in message and centre in message and "q2" in message, message
        assert late_rule.step(influx_db, now_ms() + 10_000) == [], "told once"
        # the integrity board lists it, as Grafana displays it
        board = integrity(s)
        js = board.to_json(s.datasource_uid)
        panel = next(p for spec, p in zip(board.panels, js["panels"], strict=True) if spec.key == "integrity.late")
        shown = show_panel(influx_db, js, panel, TimeRange(now_ms() - 86_400_000, now_ms()), now_ms(), {})
        (row,) = shown.text
        assert (row["Vé"], row["Đánh giá lúc"], row["Nhận muộn"], row["Quầy"]) == (
            "B077", when, "2 giờ 05 phút", "Quầy q2")
        assert row["Trung tâm"] == "Trung tâm Phục vụ hành chính công"
        assert (row["Mã cán bộ"], row["Cán bộ"]) == ("cb2", "—"), "no name in the registry: a dash, never empty"
    finally:
        svc.stop()
