"""MqttSession against the suite's real Mosquitto: credentials, persistent sessions, last will, manual ack."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho_mqtt
import pytest

from broker.mqtt.session import LastWill, Message, MqttSession, acknowledged, wait_acknowledged
from broker.mqtt.settings import MqttSettings
from tests.support.mqtt import reconnecting
from tests.support.waiting import wait_until


class Inbox:
    """Collects what a session receives (on paho's thread), for bounded waits in the test thread."""

    def __init__(self) -> None:
        self.got: list[Message] = []
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        with self.lock:
            self.got.append(msg)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self.lock:
            return [bytes(m.payload) for m in self.got if topic is None or m.topic == topic]


@pytest.fixture
def sessions() -> Iterator[list[MqttSession]]:
    """Every session a test opens is stopped at the end, even when it fails."""
    opened: list[MqttSession] = []
    yield opened
    for s in opened:
        s.stop()


def open_session(opened: list[MqttSession], settings: MqttSettings, client_id: str, **kw: object) -> MqttSession:
    s = MqttSession(settings, client_id, **kw)  # type: ignore[arg-type]
    opened.append(s)
    s.start()
    assert s.wait_connected(10), f"{client_id} did not connect: {s.connect_rc}"
    if s.subscriptions:
        wait_until(s.subscribed.is_set, 10, what=f"{client_id} subscribed")
    return s


def publish_acked(pub: MqttSession, topic: str, payloads: list[bytes]) -> None:
    infos = [pub.publish(topic, p) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def with_protocol(settings: MqttSettings, protocol: str) -> MqttSettings:
    return settings.model_copy(update={"protocol": protocol})


def test_credentials_from_password_file_connect_and_wrong_password_is_refused(
        mqtt_settings: MqttSettings, tmp_path: Path, uid: str, sessions: list[MqttSession]) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text(f"{mqtt_settings.secret()}\n", encoding="utf-8")
    from_file = MqttSettings.model_validate({"url": mqtt_settings.url, "username": mqtt_settings.username,
                                             "password_file": str(secret)})
    ok = open_session(sessions, from_file, f"cred-ok-{uid}")
    assert ok.connect_rc is not None and not ok.connect_rc.is_failure

    wrong = MqttSettings.model_validate({"url": mqtt_settings.url, "username": mqtt_settings.username,
                                         "password": "not-the-password"})
    bad = MqttSession(reconnecting(wrong, 5, 5), f"cred-bad-{uid}")
    sessions.append(bad)
    bad.start()
    wait_until(lambda: bad.connect_rc is not None, 10, what="CONNACK for the wrong password")
    assert bad.connect_rc is not None and bad.connect_rc.is_failure and not bad.connected.is_set()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_keeps_qos1_messages_published_while_away(
        mqtt_settings: MqttSettings, uid: str, protocol: str, sessions: list[MqttSession]) -> None:
    settings = with_protocol(mqtt_settings, protocol)
    topic = f"t/{uid}/persist"
    kept, dropped = f"keep-{uid}", f"drop-{uid}"
    for cid, expiry in ((kept, 60), (dropped, None)):
        open_session(sessions, settings, cid, subscriptions=[(topic, 1)], session_expiry_s=expiry).stop()
    pub = open_session(sessions, settings, f"pub-{uid}")
    sent = [f"m{i}".encode() for i in range(5)]
    publish_acked(pub, topic, sent)

    # no subscriptions this time: whatever arrives was kept by the broker for the session
    kept_in, dropped_in = Inbox(), Inbox()
    open_session(sessions, settings, kept, session_expiry_s=60, on_message=kept_in)
    open_session(sessions, settings, dropped, on_message=dropped_in)
    wait_until(lambda: len(kept_in.payloads()) >= len(sent), 10, what="queued messages after reconnect")
    assert kept_in.payloads(topic) == sent
    # the marker, published after both reconnected, arrives after anything the broker had queued
    marker = f"t/{uid}/marker"
    probe = open_session(sessions, settings, f"probe-{uid}", subscriptions=[(marker, 1)], on_message=kept_in)
    publish_acked(pub, marker, [b"marker"])
    wait_until(lambda: kept_in.payloads(marker), 10, what="marker")
    assert dropped_in.payloads() == [], "a throw-away session got messages from before it connected"
    probe.stop()


def test_last_will_on_lost_connection_but_not_on_clean_stop(
        mqtt_settings: MqttSettings, uid: str, sessions: list[MqttSession]) -> None:
    will_topic, marker = f"t/{uid}/status", f"t/{uid}/marker"
    inbox = Inbox()
    open_session(sessions, mqtt_settings, f"watch-{uid}", subscriptions=[(will_topic, 1), (marker, 1)],
                 on_message=inbox)
    pub = open_session(sessions, mqtt_settings, f"pub-{uid}")
    will = LastWill(will_topic, b"offline", qos=1, retain=False)

    graceful = open_session(sessions, mqtt_settings, f"graceful-{uid}", will=will)
    graceful.stop()
    publish_acked(pub, marker, [b"after-stop"])
    wait_until(lambda: inbox.payloads(marker), 10, what="marker after the clean stop")
    assert inbox.payloads(will_topic) == [], "a clean DISCONNECT must not fire the will"

    lost = open_session(sessions, mqtt_settings, f"lost-{uid}", will=will)
    sock = lost.client.socket()
    assert isinstance(sock, socket.socket)
    lost.client.loop_stop()  # no DISCONNECT will ever be sent: the connection just dies
    sock.shutdown(socket.SHUT_RDWR)
    assert wait_until(lambda: inbox.payloads(will_topic), 10, what="last will") == [b"offline"]


def test_manual_ack_redelivers_until_acked(mqtt_settings: MqttSettings, uid: str,
                                           sessions: list[MqttSession]) -> None:
    topic = f"t/{uid}/work"
    pub = open_session(sessions, mqtt_settings, f"pub-{uid}")

    def consumer(inbox: Inbox) -> MqttSession:
        return open_session(sessions, mqtt_settings, f"worker-{uid}", subscriptions=[(topic, 1)],
                            session_expiry_s=60, manual_ack=True, on_message=inbox)

    first = Inbox()
    c = consumer(first)
    publish_acked(pub, topic, [b"job-1"])
    wait_until(lambda: first.payloads(topic), 10, what="first delivery")
    c.stop()  # not acked: the broker must deliver it again

    second = Inbox()
    c = consumer(second)
    wait_until(lambda: second.payloads(topic), 10, what="redelivery of the un-acked message")
    with second.lock:
        (msg,) = second.got
    assert bytes(msg.payload) == b"job-1" and msg.dup
    c.ack(msg.mid, msg.qos)
    c.stop()  # PUBACK goes out before DISCONNECT, on the connection that delivered the message

    publish_acked(pub, topic, [b"job-2"])  # while away: queued behind anything still un-acked
    third = Inbox()
    consumer(third)
    wait_until(lambda: third.payloads(topic), 10, what="the next job")
    assert third.payloads(topic) == [b"job-2"], "an acked message was delivered again"


def test_receive_maximum_bounds_unacked_messages_and_ack_releases_more(
        mqtt_settings: MqttSettings, uid: str, sessions: list[MqttSession]) -> None:
    topic = f"t/{uid}/bounded"
    got: list[Message] = []
    lock = threading.Lock()

    def on_message(msg: Message) -> None:
        with lock:
            got.append(msg)

    c = open_session(sessions, mqtt_settings, f"bounded-{uid}", subscriptions=[(topic, 1)], session_expiry_s=60,
                     manual_ack=True, receive_maximum=2, on_message=on_message)
    pub = open_session(sessions, mqtt_settings, f"pub-{uid}")
    publish_acked(pub, topic, [f"m{i}".encode() for i in range(5)])
    wait_until(lambda: len(got) >= 2, 10, what="the first two messages")
    threading.Event().wait(0.5)  # the broker had time to send more, and must not have
    with lock:
        assert len(got) == 2
        first_two = list(got)
    for m in first_two:
        c.ack(m.mid, m.qos)
    wait_until(lambda: len(got) >= 4, 10, what="two more after acking two")
    with lock:
        assert [bytes(m.payload) for m in got[:4]] == [b"m0", b"m1", b"m2", b"m3"]


def test_per_topic_callbacks_are_refused_not_silently_ignored() -> None:
    """The session replaces paho's per-topic matcher (walked for every message, never used by us)."""
    from broker.mqtt.settings import MqttSettings

    session = MqttSession(MqttSettings.model_validate({"url": "mqtt://127.0.0.1:1"}), "no-topic-callbacks")
    with pytest.raises(NotImplementedError, match="no per-topic callbacks"):
        session.client.message_callback_add("hl/v1/#", lambda *_: None)


def test_a_publish_made_while_disconnected_is_acknowledged_after_the_connect(
        mqtt_settings: MqttSettings, uid: str, sessions: list[MqttSession]) -> None:
    """The race a broker restart makes for 2,000 terminals: publish() between a lost socket and the next
    connect returns paho's info with rc NO_CONN, yet paho keeps the QoS 1 message and sends it after the
    connect. acknowledged() must follow that message to its PUBACK (paho's is_published() raises forever)."""
    topic = f"t/{uid}/queued"
    inbox = Inbox()
    open_session(sessions, mqtt_settings, f"sub-{uid}", subscriptions=[(topic, 1)], on_message=inbox)
    pub = MqttSession(mqtt_settings, f"queued-{uid}")
    sessions.append(pub)
    info = pub.publish(topic, b"queued while disconnected")  # before start(): no socket yet
    assert info.rc == paho_mqtt.MQTT_ERR_NO_CONN
    with pytest.raises(RuntimeError):
        info.is_published()  # what the terminal's drain loop used to call
    assert not acknowledged(info)
    pub.start()
    assert wait_until(lambda: acknowledged(info), 10, what="the PUBACK of the queued message")
    assert wait_acknowledged(info, 1)
    wait_until(lambda: inbox.payloads(topic), 10, what="delivery")
    assert inbox.payloads(topic) == [b"queued while disconnected"]
