"""The escalation end to end: a "Không hài lòng" through Mosquitto and the REAL ingest, then the
generated rule evaluated on what the ingest wrote (no seeded escalation points here)."""

from __future__ import annotations

import time
import uuid

import yaml

from broker.contract import qms_topic, rating_topic
from broker.mqtt.settings import MqttSettings
from dashboards.provisioning import render
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer, MosquittoServer
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms, publish_all, rating, start_ingest, ticket_closed
from tests.support.waiting import wait_until

from .grafana_alerting import rules_by_uid


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
