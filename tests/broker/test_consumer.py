"""The ingest's lean MQTT consumer against the suite's real Mosquitto (MQTT 5 and 3.1.1).

What the ingest relies on: the persistent session keeps what was not acked, nothing is acked
before ack_many, receive-maximum bounds what the broker hands over, retained messages are not
replayed on subscribe, refusals and takeovers are reported, packets split across reads are
reassembled, a hook that raises does not end the session, keepalive pings keep an idle session.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.mosquitto.render import MAX_PACKET_BYTES
from broker.mqtt.consumer import MqttConsumer
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from broker.mqtt.subscriptions import RETAIN_DO_NOT_SEND, SubOptions, Subscription
from hailong.localstack import MosquittoServer
from tests.support.mqtt import reconnecting
from tests.support.waiting import wait_until

NO_REPLAY = SubOptions(qos=1, retain_as_published=True, retain_handling=RETAIN_DO_NOT_SEND)


class Got:
    """What a consumer received (network thread), for bounded waits in the test thread."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.items: list[tuple[str, bytes, int, int, bool]] = []
        self.lock = threading.Lock()
        self.fail_on = fail_on

    def __call__(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        if payload == self.fail_on:
            raise RuntimeError("hook bug")
        with self.lock:
            self.items.append((topic, payload, mid, qos, retain))

    def take(self) -> list[tuple[str, bytes, int, int, bool]]:
        with self.lock:
            out, self.items = self.items, []
            return out

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


@pytest.fixture
def opened() -> Iterator[list[MqttConsumer | MqttSession]]:
    clients: list[MqttConsumer | MqttSession] = []
    yield clients
    for c in clients:
        c.stop()


def consumer(opened: list[MqttConsumer | MqttSession], settings: MqttSettings, cid: str, subs: list[Subscription],
             got: Got, **kw: object) -> MqttConsumer:
    c = MqttConsumer(reconnecting(settings, 0.2, 1), cid, subscriptions=subs, on_message=got, session_expiry_s=600,
                     **kw)  # type: ignore[arg-type]
    opened.append(c)
    c.start()
    assert c.wait_connected(10), f"{cid} did not connect: {c.connect_rc}"
    wait_until(c.subscribed.is_set, 10, what=f"{cid} SUBACK")
    return c


def publisher(opened: list[MqttConsumer | MqttSession], settings: MqttSettings, cid: str) -> MqttSession:
    p = MqttSession(settings, cid)
    opened.append(p)
    p.start()
    assert p.wait_connected(10)
    return p


def publish(p: MqttSession, topic: str, payloads: list[bytes], retain: bool = False) -> None:
    infos = [p.publish(topic, b, qos=1, retain=retain) for b in payloads]
    for i in infos:
        i.wait_for_publish(10)
        assert i.is_published()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_keeps_what_was_not_acked(mqtt_settings: MqttSettings, uid: str, protocol: str,
                                                     opened: list[MqttConsumer | MqttSession]) -> None:
    settings = mqtt_settings.model_copy(update={"protocol": protocol})
    topic = f"t/{uid}/a"
    got = Got()
    c = consumer(opened, settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    c.stop()  # offline: the broker queues for the persistent session
    pub = publisher(opened, settings, f"pub-{uid}")
    sent = [f"m{i}".encode() for i in range(40)]
    publish(pub, topic, sent)

    c = consumer(opened, settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    wait_until(lambda: len(got) == 40, 10, what="40 queued messages")
    first = got.take()
    assert [p for _, p, *_ in first] == sent and {t for t, *_ in first} == {topic}
    assert all(qos == 1 and mid > 0 and not retain for _, _, mid, qos, retain in first)
    c.ack_many([mid for _, _, mid, *_ in first[:25]])  # the last 15 are never acked on this connection
    time.sleep(0.3)
    c.stop()

    c = consumer(opened, settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    wait_until(lambda: len(got) >= 15, 10, what="the 15 un-acked messages again")
    time.sleep(0.3)
    again = got.take()
    assert [p for _, p, *_ in again] == sent[25:], "exactly the un-acked ones are redelivered"
    c.ack_many([mid for _, _, mid, *_ in again])
    time.sleep(0.3)
    c.stop()
    c = consumer(opened, settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    time.sleep(0.5)
    assert got.take() == [], "nothing left once everything was acked"


def test_receive_maximum_bounds_what_the_broker_hands_over(mqtt_settings: MqttSettings, uid: str,
                                                           opened: list[MqttConsumer | MqttSession]) -> None:
    got = Got()
    c = consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got, receive_maximum=7)
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    publish(pub, f"t/{uid}/x", [f"m{i}".encode() for i in range(30)])
    wait_until(lambda: len(got) == 7, 10, what="the first 7")
    time.sleep(0.5)
    assert len(got) == 7, "no more than receive-maximum un-acked messages"
    c.ack_many([mid for _, _, mid, *_ in got.take()])
    # after acks, Mosquitto 2.0.11 hands over the whole queue, not 7 more (issue 12 saw 914 with 100):
    # that is why the ingest keeps its own budget (ingest/inbox.py) and does not rest on this bound
    wait_until(lambda: len(got) == 23, 10, what="the rest after the acks")


def test_retained_not_replayed_on_subscribe_and_live_retain_flag_kept(mqtt_settings: MqttSettings, uid: str,
                                                                      opened: list[MqttConsumer | MqttSession]) -> None:
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    publish(pub, f"t/{uid}/old", [b"retained before"], retain=True)
    got = Got()
    consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}/#", NO_REPLAY)], got)
    publish(pub, f"t/{uid}/new", [b"live retained"], retain=True)
    publish(pub, f"t/{uid}/new", [b"live plain"])
    wait_until(lambda: len(got) == 2, 10, what="the two live messages")
    time.sleep(0.3)
    assert [(t, p, r) for t, p, _, _, r in got.take()] == [
        (f"t/{uid}/new", b"live retained", True), (f"t/{uid}/new", b"live plain", False)]
    publish(pub, f"t/{uid}/old", [b""], retain=True)  # clear the retained messages this test left
    publish(pub, f"t/{uid}/new", [b""], retain=True)


def test_packets_split_across_reads_and_a_failing_hook(mqtt_settings: MqttSettings, uid: str,
                                                       opened: list[MqttConsumer | MqttSession]) -> None:
    got = Got(fail_on=b"boom")
    consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    # 3-byte remaining lengths, a payload larger than one read, many small packets around them,
    # Vietnamese in the topic (UTF-8), and one message the hook fails on
    big = bytes(range(256)) * 1200  # 300 KiB > the consumer's 256 KiB read
    payloads = [b"s" * (i % 300) for i in range(200)] + [big, b"boom", b"after"] + [b"x" * 20_000] * 3
    topic = f"t/{uid}/hài-lòng"
    publish(pub, topic, payloads)
    wanted = [p for p in payloads if p != b"boom"]
    wait_until(lambda: len(got) == len(wanted), 20, what="every message but the failing one")
    items = got.take()
    assert [p for _, p, *_ in items] == wanted
    assert {t for t, *_ in items} == {topic}


def test_resubscribe_adds_and_drops_filters(mqtt_settings: MqttSettings, uid: str,
                                            opened: list[MqttConsumer | MqttSession]) -> None:
    got = Got()
    c = consumer(opened, mqtt_settings, f"cons-{uid}", [(f"a/{uid}", 1)], got)
    added, gone = c.resubscribe([(f"b/{uid}", 1)])
    assert (added, gone) == ([f"b/{uid}"], [f"a/{uid}"])
    wait_until(c.subscribed.is_set, 10, what="SUBACK of the added filter")
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    publish(pub, f"a/{uid}", [b"old filter"])
    publish(pub, f"b/{uid}", [b"new filter"])
    wait_until(lambda: len(got) >= 1, 10, what="the message on the new filter")
    time.sleep(0.3)
    assert [p for _, p, *_ in got.take()] == [b"new filter"]


# Mosquitto 2.0.11 answers "not authorized" to a wrong password (0x87 in MQTT 5, 5 in 3.1.1)
@pytest.mark.parametrize(("protocol", "code", "name"), [("5", 0x87, "not authorized (0x87)"),
                                                        ("3.1.1", 5, "not authorized (0x05)")])
def test_a_refused_connect_is_reported_with_the_brokers_reason(
        mqtt_settings: MqttSettings, uid: str, opened: list[MqttConsumer | MqttSession], protocol: str,
        code: int, name: str, caplog: pytest.LogCaptureFixture) -> None:
    wrong = mqtt_settings.model_copy(update={"protocol": protocol, "password": "not-the-password"})
    c = MqttConsumer(reconnecting(wrong, 5, 5), f"cons-{uid}", subscriptions=[("x", 1)], on_message=Got())
    opened.append(c)
    with caplog.at_level(logging.ERROR, logger="hailong.mqtt"):
        c.start()
        wait_until(c.connect_failed.is_set, 10, what="the refusal")
    assert c.connect_rc == code and not c.connected.is_set()
    assert "refused" in caplog.text and name in caplog.text
    assert "not-the-password" not in caplog.text, "the password is never logged"


def test_takeover_is_reported_and_the_consumer_comes_back(mqtt_settings: MqttSettings, uid: str,
                                                          opened: list[MqttConsumer | MqttSession]) -> None:
    reasons: list[str] = []
    connects: list[float] = []
    got = Got()
    c = consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}", 1)], got,
                 on_disconnect=reasons.append, on_connect=lambda: connects.append(time.monotonic()))
    thief = publisher(opened, mqtt_settings, f"cons-{uid}")  # same client id: the broker drops the consumer
    thief.stop()
    wait_until(lambda: reasons, 10, what="the disconnect hook")
    # Mosquitto 2.0.11 closes the old connection without a DISCONNECT: the reason is the closed socket
    assert reasons[0] in ("broker closed the connection",
                          f"broker disconnected cons-{uid}: session taken over (0x8E)")
    wait_until(lambda: len(connects) >= 2 and c.connected.is_set(), 10, what="the consumer back")


def test_keepalive_pings_keep_an_idle_session(mqtt_settings: MqttSettings, uid: str,
                                              opened: list[MqttConsumer | MqttSession]) -> None:
    reasons: list[str] = []
    settings = mqtt_settings.model_copy(update={"keepalive_s": 5})
    c = consumer(opened, settings, f"cons-{uid}", [(f"t/{uid}", 1)], Got(), on_disconnect=reasons.append)
    time.sleep(9)  # the broker drops a client silent for 1.5 x keepalive = 7.5 s
    assert c.connected.is_set() and reasons == []


def test_publisher_properties_are_skipped_and_the_payload_is_exact(mqtt_settings: MqttSettings, uid: str,
                                                                   opened: list[MqttConsumer | MqttSession]) -> None:
    """A terminal (or a thief with its password) can attach any MQTT 5 properties to a PUBLISH: user
    properties, content type, response topic, correlation data, a topic alias. The broker forwards most
    of them; the consumer must skip them (a property block over 127 bytes has a 2-byte length) and
    hand over the exact topic and payload."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got = Got()
    consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k" * 40, "v" * 200), ("hài lòng", "Rất hài lòng")]
    props.ContentType = "application/json"
    props.ResponseTopic = f"t/{uid}/reply"
    props.CorrelationData = b"\x00\x01" * 50
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 3600
    topic = f"t/{uid}/with-props"
    info = pub.client.publish(topic, b'{"score": 4}', qos=1, properties=props)
    info.wait_for_publish(10)
    aliased = Properties(PacketTypes.PUBLISH)
    aliased.TopicAlias = 1  # the broker resolves the alias; it never sends one to a client that allows none
    for payload in (b"first via alias", b"second via alias"):
        pub.client.publish(topic if payload.startswith(b"first") else "", payload, qos=1,
                           properties=aliased).wait_for_publish(10)
    wait_until(lambda: len(got) == 3, 10, what="the three messages")
    assert [(t, p) for t, p, *_ in got.take()] == [
        (topic, b'{"score": 4}'), (topic, b"first via alias"), (topic, b"second via alias")]


def test_qos0_and_qos2_publishers_are_delivered_at_0_and_1(mqtt_settings: MqttSettings, uid: str,
                                                           opened: list[MqttConsumer | MqttSession]) -> None:
    """A plain MQTT client may publish at any QoS: QoS 0 arrives without a packet id (nothing to ack),
    QoS 2 is downgraded by the broker to the subscription's QoS 1."""
    got = Got()
    c = consumer(opened, mqtt_settings, f"cons-{uid}", [(f"t/{uid}/#", 1)], got)
    pub = publisher(opened, mqtt_settings, f"pub-{uid}")
    for qos in (0, 2):
        pub.client.publish(f"t/{uid}/q{qos}", f"qos {qos}".encode(), qos=qos).wait_for_publish(10)
    wait_until(lambda: len(got) == 2, 10, what="both messages")
    items = sorted(got.take())
    assert [(t, p, q) for t, p, _, q, _ in items] == [(f"t/{uid}/q0", b"qos 0", 0), (f"t/{uid}/q2", b"qos 2", 1)]
    assert items[0][2] == 0 and items[1][2] > 0
    c.ack_many([items[1][2]])


class _PacketLimitedBroker(MosquittoServer):
    """The dev broker with the rendered broker's max_packet_size (broker/mosquitto/render.py)."""

    def default_conf(self) -> str:
        return super().default_conf() + f"max_packet_size {MAX_PACKET_BYTES}\n"


def test_hundreds_of_filters_are_subscribed_and_dropped_in_packets_the_broker_accepts(
        tmp_path: Path, opened: list[MqttConsumer | MqttSession]) -> None:
    """An ingest partition of a large province: 600 centre filters (~20 KB) in one SUBSCRIBE would exceed the
    rendered max_packet_size and get the consumer disconnected; chunked, every filter works, and the next
    session's drop list (600 UNSUBSCRIBEs) leaves nothing of them."""
    broker = _PacketLimitedBroker(tmp_path / "mq").start()
    try:
        settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}",
                                                "username": broker.username, "password": broker.password})
        many = [f"hl/v1/chunk-centre-{i:03d}/+/rating" for i in range(600)]
        got = Got()
        first = consumer(opened, settings, "chunky", [(f, 1) for f in many], got)
        pub = publisher(opened, settings, "chunky-pub")
        publish(pub, "hl/v1/chunk-centre-000/d/rating", [b"first"])
        publish(pub, "hl/v1/chunk-centre-599/d/rating", [b"last"])
        wait_until(lambda: len(got) == 2, 10, what="both ends of the filter list delivered")
        first.ack_many([m for _, _, m, _, _ in got.take()])
        first.stop()
        opened.remove(first)
        again = Got()
        second = consumer(opened, settings, "chunky", [("hl/v1/kept/+/rating", 1)], again, drop_on_connect=many)
        assert second.connected.is_set()
        publish(pub, "hl/v1/chunk-centre-300/d/rating", [b"dropped"])
        publish(pub, "hl/v1/kept/d/rating", [b"kept"])
        wait_until(lambda: len(again) >= 1, 10, what="the kept filter delivered")
        time.sleep(0.5)
        assert [p for _, p, _, _, _ in again.take()] == [b"kept"], "a dropped filter still delivered"
    finally:
        broker.stop()
