"""The vendor's HTTP callback: 200 only once queued; every bad request a 4xx naming the problem, nothing published."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.mqtt.settings import MqttSettings
from qms_bridge.config import load_config
from qms_bridge.service import Bridge
from tests.support.waiting import wait_until

from .conftest import DEPLOY, QmsListener, bridge_config

CENTRE = "ttphcc-ha-noi"
SECRET = "vendor-shared-key"
GOOD = {"event": "DONE", "time": "2026-12-01T09:15:02.250", "counter": "Q1",
        "staff": {"code": "NV01", "name": "Nguyễn Thị Lan"},
        "ticket": {"id": "20261201-HT-0007", "number": "A007", "service": "HT"}}


@pytest.fixture
def bridge(tmp_path: Path, mqtt_settings: MqttSettings) -> Iterator[Bridge]:
    config = bridge_config(DEPLOY / "qms-webhook.toml", tmp_path, mqtt_settings)
    cfg = load_config(config, environ={"HAILONG_QMS__WEBHOOK__SECRET": SECRET, "HAILONG_QMS__HTTP__PORT": "0",
                                       "HAILONG_QMS__HTTP__HOST": "127.0.0.1",
                                       "HAILONG_QMS__WEBHOOK__SECRET_FILE": str(tmp_path / "unused"),
                                       "HAILONG_QMS__OUTBOX": str(tmp_path / "outbox.sqlite3")})
    b = Bridge(cfg).start()
    wait_until(b.publisher.connected.is_set, 10, what="bridge connected")
    yield b
    b.stop()


@pytest.fixture
def listener(mqtt_settings: MqttSettings, uid: str) -> Iterator[QmsListener]:
    lst = QmsListener(mqtt_settings, CENTRE, f"qms-wh-{uid}").start()
    yield lst
    lst.stop()


def post(bridge: Bridge, body: bytes, *, sign: bool = True, key: str = SECRET, ctype: str = "application/json",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", bridge.http.port, timeout=10)
    hdrs = {"Content-Type": ctype, **(headers or {})}
    if sign:
        hdrs["X-Hailong-Signature"] = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    conn.request("POST", "/qms/events", body=body, headers=hdrs)
    resp = conn.getresponse()
    doc = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, doc


def body(**changes: Any) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        node = doc
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def test_good_event_is_published_once_with_the_vendor_ticket_id_and_a_replay_is_a_duplicate(
        bridge: Bridge, listener: QmsListener) -> None:
    status, doc = post(bridge, body())
    assert status == 200 and len(doc["queued"]) == 1
    wait_until(lambda: listener.events(), 10, what="the event on the QMS topic")
    topic, event = listener.events()[0]
    assert topic == f"hl/v1/{CENTRE}/qms/q01"
    # 09:15:02.250 in Hồ Chí Minh (UTC+7) is 02:15:02.250 UTC
    assert (event["type"], event["officer"], event["ticket"], event["ticket_id"], event["service"], event["at"]) == (
        "ticket_closed", "cb-lan", "A007", "20261201-HT-0007", "ho-tich", 1796091302250)
    assert event["event_id"] == doc["queued"][0]
    status, again = post(bridge, body())  # the vendor retries (it missed our 200)
    assert status == 200 and again == {"queued": [], "duplicates": doc["queued"]}
    status, _ = post(bridge, body(time="2026-12-01T09:40:00"))  # a recall: closed again, later
    assert status == 200
    wait_until(lambda: len(listener.events()) == 2, 10, what="the recall")
    assert len({e["event_id"] for _, e in listener.events()}) == 2
    # the broker may deliver to the listener before its PUBACK reaches the bridge: wait for the ack
    wait_until(lambda: bridge.outbox.depth() == 0, 10, what="both events acked and out of the outbox")


@pytest.mark.parametrize(("name", "request_kwargs", "status", "reason", "detail"), [
    ("bad secret", {"raw": body(), "key": "guessed"}, 401, "bad_signature", "HMAC-SHA256"),
    ("no signature", {"raw": body(), "sign": False}, 401, "missing_signature", "X-Hailong-Signature"),
    ("malformed JSON", {"raw": b'{"event": "DONE", '}, 400, "malformed_json", "not JSON"),
    ("not UTF-8", {"raw": b'{"event": "\xff"}'}, 400, "malformed_json", "UTF-8"),
    ("not JSON content type", {"raw": body(), "ctype": "text/plain"}, 415, "not_json", "application/json"),
    ("unknown counter", {"raw": body(counter="Q9")}, 422, "unknown_counter", "Q9"),
    ("missing ticket", {"raw": body(ticket__number=None)}, 422, "missing_ticket", "ticket"),
    ("unknown event type", {"raw": body(event="PAUSE")}, 422, "unknown_type", "PAUSE"),
    ("bad time", {"raw": body(time="yesterday")}, 422, "bad_time", "yesterday"),
    ("oversize body", {"raw": body(pad="x" * 20_000)}, 413, "body_too_large", "16384"),
    # bodies Python's json would answer with RecursionError/OverflowError/ValueError (a 503 before)
    ("8,000-deep arrays", {"raw": b"[" * 8_000 + b"]" * 8_000}, 400, "malformed_json", "nested 8000 levels"),
    ("2,000-deep objects", {"raw": b'{"a":' * 2_000 + b"1" + b"}" * 2_000}, 400, "malformed_json", "nested 2000"),
    ("15,000 unterminated [", {"raw": b"[" * 15_000}, 400, "malformed_json", "nested 15000 levels"),
    ("Infinity time", {"raw": body().replace(b'"2026-12-01T09:15:02.250"', b"Infinity")}, 400, "malformed_json",
     "Infinity is not a JSON number"),
    ("NaN time", {"raw": body().replace(b'"2026-12-01T09:15:02.250"', b"NaN")}, 400, "malformed_json", "NaN"),
    ("1e400 time", {"raw": body().replace(b'"2026-12-01T09:15:02.250"', b"1e400")}, 400, "malformed_json",
     "out of range"),
    ("5,000-digit time", {"raw": body().replace(b'"2026-12-01T09:15:02.250"', b"9" * 5_000)}, 400,
     "malformed_json", "not JSON"),
    ("object as time", {"raw": body(time={"y": 2026})}, 422, "bad_time", "not a time"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_publish_nothing(
        bridge: Bridge, listener: QmsListener, name: str, request_kwargs: dict[str, Any], status: int, reason: str,
        detail: str) -> None:
    raw = request_kwargs.pop("raw")
    got, doc = post(bridge, raw, **request_kwargs)
    assert (got, doc["error"]) == (status, reason), doc
    assert detail in doc["detail"]
    assert bridge.outbox.depth() == 0
    # then a good event: it is the only thing that ever reaches the topic
    assert post(bridge, body())[0] == 200
    wait_until(lambda: listener.events(), 10, what="the good event")
    assert [e["ticket"] for _, e in listener.events()] == ["A007"]
    assert bridge.health.webhook_rejected == 1


def test_healthz_reports_per_counter_times(bridge: Bridge) -> None:
    assert post(bridge, body())[0] == 200
    wait_until(lambda: bridge.health.counters.get("q01") and bridge.health.counters["q01"].last_acked_ms, 10,
               what="ack")
    conn = http.client.HTTPConnection("127.0.0.1", bridge.http.port, timeout=5)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    assert resp.status == 200 and doc["state"] == "ok" and doc["mqtt_connected"] is True
    assert doc["counters"]["q01"]["last_event_at_ms"] == 1796091302250
    assert doc["counters"]["q01"]["quiet"] is False


def test_a_status_the_map_calls_not_served_is_answered_200_and_never_published(
        tmp_path: Path, mqtt_settings: MqttSettings, listener: QmsListener) -> None:
    """A vendor that sends its cancellations as closes with a status: `HUY` is understood (200, so
    the vendor does not retry) and is no ticket_closed; a status the map does not list is a 422."""
    config = bridge_config(DEPLOY / "qms-webhook.toml", tmp_path, mqtt_settings)
    text = config.read_text().replace('service = "ticket.service"\n', 'service = "ticket.service"\n'
                                      'status = "ticket.status"\n')
    config.write_text(text + '\n[maps.statuses]\nDONE = "served"\nHUY = "not_served"\nCHUYEN = "not_served"\n')
    cfg = load_config(config, environ={"HAILONG_QMS__WEBHOOK__SECRET": SECRET, "HAILONG_QMS__HTTP__PORT": "0",
                                       "HAILONG_QMS__OUTBOX": str(tmp_path / "outbox.sqlite3")})
    b = Bridge(cfg).start()
    try:
        wait_until(b.publisher.connected.is_set, 10, what="bridge connected")
        status, doc = post(b, body(ticket__status="HUY"))
        assert status == 200 and doc["queued"] == [] and doc["not_served"] == [
            {"type": "ticket_closed", "ticket": "A007", "status": "HUY"}], doc
        status, doc = post(b, body(ticket__status="LATER"))
        assert (status, doc["error"]) == (422, "unknown_status") and "LATER" in doc["detail"]
        status, doc = post(b, body(ticket__status="DONE", ticket__number="A008"))
        assert status == 200 and len(doc["queued"]) == 1
        wait_until(lambda: listener.events(), 10, what="the served close")
        time.sleep(0.5)
        assert [(e["type"], e["ticket"]) for _, e in listener.events()] == [("ticket_closed", "A008")]
    finally:
        b.stop()


def test_503_only_when_the_bridge_cannot_queue(bridge: Bridge) -> None:
    """The outbox cannot be written (here: its database closed under it): 503 not_queued, the one
    answer a vendor retries; the same body once the outbox works again is accepted."""
    import sqlite3

    real = bridge.outbox._db
    broken = sqlite3.connect(":memory:", check_same_thread=False)
    broken.close()
    bridge.outbox._db = broken
    try:
        status, doc = post(bridge, body())
        assert (status, doc["error"]) == (503, "not_queued")
    finally:
        bridge.outbox._db = real
    assert post(bridge, body())[0] == 200
