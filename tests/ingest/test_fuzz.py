"""Property tests: arbitrary bytes and mutated valid payloads never crash the consumer, and every
message ends as a stored point or a ``rejected`` point (first in the handler, then end to end)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.contract import new_event_id, qms_topic, rating_topic, status_topic
from broker.mqtt.settings import MqttSettings
from ingest.config import IngestConfig
from ingest.handlers import MessageHandler
from ingest.registry import RegistryHolder
from ingest.stats import IngestStats
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, publish_all, rating, start_ingest
from tests.support.waiting import wait_until

CENTRE, DEVICE = "fz", "fz-t1"
FLEET = TFleet().add(TCentre(CENTRE, has_qms=True, walkup_allowed=True), TDevice(DEVICE, CENTRE, "q1"))
TOPICS = [rating_topic(CENTRE, DEVICE), status_topic(CENTRE, DEVICE), qms_topic(CENTRE, "q1"),
          rating_topic(CENTRE, "other"), "hl/v1/fz", "x/y/z/w/v"]
OK = {"rating", "ticket", "status", "ignored", "held"}


def base_rating() -> dict[str, Any]:
    return json.loads(rating(CENTRE, DEVICE, "q1", "cb1", None, 1).to_json())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    doc = base_rating()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(doc)))
        action = draw(st.sampled_from(["drop", "set", "extra"]))
        if action == "drop":
            doc.pop(key, None)
        elif action == "set":
            doc[key] = draw(JSON_VALUES)
        else:
            doc[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUES)
    raw = bytearray(json.dumps(doc).encode())
    if draw(st.booleans()) and raw:
        pos = draw(st.integers(0, len(raw) - 1))
        raw[pos] = draw(st.integers(0, 255))
    return bytes(raw)


def mutate_with(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """A seeded mutation (hypothesis strategies are for @given, not for building a fixed stream)."""
    doc = dict(doc)
    key = rng.choice(sorted(doc))
    choice = rng.randint(0, 3)
    if choice == 0:
        del doc[key]
    elif choice == 1:
        doc[key] = rng.choice([None, -1, 2**70, "", "x" * 100, [], {}, 1.5, True])
    raw = bytearray(json.dumps(doc).encode())
    if choice >= 2:
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


def handler() -> MessageHandler:
    cfg = IngestConfig.model_validate({"integrity": {"hold_grace_s": 0}})
    return MessageHandler(cfg, IngestStats(), time.time_ns, RegistryHolder(FLEET, "p"))


def check(h: MessageHandler, topic: str, payload: bytes) -> str:
    out = h.handle(topic, payload, time.time_ns())
    assert out.outcome in OK or out.outcome.startswith("rejected:"), out.outcome
    assert out.outcome != "rejected:internal_error"
    for p in out.points:
        assert p.to_line()  # always serialisable line protocol
    return out.outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=60), payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(topic: str, payload: bytes) -> None:
    check(handler(), topic, payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated())
def test_mutated_ratings_end_stored_or_rejected(payload: bytes) -> None:
    outcome = check(handler(), TOPICS[0], payload)
    assert outcome == "rating" or outcome.startswith("rejected:")


def test_fuzzed_stream_end_to_end(mqtt_settings: MqttSettings, influx_db: InfluxQL, uid: str) -> None:
    """200 random messages through the real broker and InfluxDB: all acked, each stored or rejected."""
    rng = random.Random(5)
    centre, device = f"c{uid}", f"d{uid}"
    fleet = TFleet().add(TCentre(centre, has_qms=False, walkup_allowed=True), TDevice(device, centre, "q1"))
    payloads: list[bytes] = []
    for i in range(200):
        if i % 3 == 0:
            payloads.append(rng.randbytes(rng.randint(0, 200)))
        else:
            doc = base_rating() | {"centre": centre, "device": device, "event_id": new_event_id(), "seq": i}
            raw = json.dumps(doc).encode()
            payloads.append(raw if i % 3 == 1 else mutate_with(rng, doc))
    svc = start_ingest(mqtt_settings, influx_db, uid, fleet=fleet)
    try:
        publish_all(mqtt_settings, f"pub-{uid}", [(rating_topic(centre, device), p) for p in payloads])
        wait_until(lambda: svc.stats.acked >= len(payloads), timeout=30, what="every message acked")
    finally:
        svc.stop()
    rejected = sum(svc.stats.rejected.values())
    assert svc.stats.ratings + rejected == len(payloads)
    assert "internal_error" not in svc.stats.rejected
    assert int(influx_db.scalar('SELECT count("payload") FROM "rejected"') or 0) == rejected
    assert svc.stats.ratings >= 60
