"""One MQTT session over paho 2.x, used by every MQTT user (terminal link, ingest, simulator, demo, tests).

Before this module each user wired paho by hand and each did it a little differently. Here,
once: TLS and credentials from :class:`MqttSettings`, MQTT 5 vs 3.1.1, the persistent session,
MQTT 5 receive-maximum, the last will, the fleet's reconnect schedule (randomised and capped,
broker/mqtt/backoff.py), re-subscribing on every connect, manual ack, and a clean disconnect.

Delivery rules the callers rely on:
- ``session_expiry_s`` set = persistent session: the broker keeps subscriptions and queued QoS 1
  messages while we are away (MQTT 5 clean_start=False + SessionExpiryInterval; 3.1.1
  clean_session=False, which never expires). Unset = a throw-away session (publishers, probes).
- ``manual_ack=True``: paho does not PUBACK a received message until :meth:`ack`; the ingest acks
  only once InfluxDB confirmed, so a crash before that makes the broker redeliver.
- :meth:`publish` returns paho's ``MQTTMessageInfo``; it turns "published" at the PUBACK, which is
  what the terminal waits for before deleting a rating from its outbox.

Hooks run on paho's network thread. They must not block; an exception in one is logged and
swallowed here, because paho would otherwise re-raise it and end its network thread.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .settings import MqttSettings
from .subscriptions import Subscription, subscription_changes

log = logging.getLogger("hailong.mqtt")

MessageInfo = mqtt.MQTTMessageInfo
Message = mqtt.MQTTMessage


def acknowledged(info: MessageInfo) -> bool:
    """Whether the broker has acknowledged this QoS 1 publish (PUBACK received).

    When the socket drops between a caller's "connected" check and ``publish()``, paho returns the
    info with ``rc = MQTT_ERR_NO_CONN`` but keeps the QoS 1 message and sends it after the next
    connect, marking this same info published at its PUBACK. paho's ``is_published()`` and
    ``wait_for_publish()`` raise for that first rc forever, so a caller polling them stalled for
    good (the terminal's outbox drain stopped deleting and publishing: seen under a broker
    restart with 2,000 terminals). The message was queued, not lost: its first rc is cleared.
    """
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        info.rc = mqtt.MQTT_ERR_SUCCESS
    return info.is_published()


def wait_acknowledged(info: MessageInfo, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for :func:`acknowledged` (a publish queued while disconnected included)."""
    acknowledged(info)
    info.wait_for_publish(max(0.0, timeout_s))
    return info.is_published()


def paho_subscriptions(subs: Sequence[Subscription]) -> list[tuple[str, int | SubscribeOptions]]:
    """Our subscriptions as paho's subscribe() takes them."""
    return [(f, o if isinstance(o, int) else SubscribeOptions(
        qos=o.qos, noLocal=o.no_local, retainAsPublished=o.retain_as_published, retainHandling=o.retain_handling))
        for f, o in subs]


@dataclass(frozen=True, slots=True)
class LastWill:
    """What the broker publishes for us when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = True


class _NoTopicCallbacks:
    """Stands in for paho's per-topic callback matcher, which no hailong client uses.

    paho walks its MQTTMatcher trie for every received message even when no
    ``message_callback_add`` was ever made: about 8 % of an ingest worker's CPU (issue 14
    profile). Our sessions deliver every message to one hook, so the walk can only ever
    find nothing. Adding a per-topic callback is refused loudly rather than ignored.
    """

    def iter_match(self, _topic: str) -> Iterator[Any]:
        return iter(())

    def __setitem__(self, key: str, value: Any) -> None:
        raise NotImplementedError("MqttSession delivers every message to on_message; no per-topic callbacks")

    def __delitem__(self, key: str) -> None:
        raise KeyError(key)


class MqttSession:
    """A paho client owned for its whole life: :meth:`start`, publish / ack, :meth:`stop`."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        subscriptions: Sequence[Subscription] = (),
        session_expiry_s: int | None = None,
        receive_maximum: int | None = None,
        will: LastWill | None = None,
        manual_ack: bool = False,
        max_inflight: int | None = None,
        on_message: Callable[[Message], None] | None = None,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[ReasonCode], None] | None = None,  # an established connection ended
        on_publish: Callable[[int, ReasonCode], None] | None = None,
        on_subscribe: Callable[[int, list[ReasonCode]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the SUBACK of the on-connect subscriptions arrived
        self.connect_rc: ReasonCode | None = None  # the last CONNACK's reason code
        self.connect_failed = threading.Event()  # an attempt ended without a session (socket, TLS, refused)
        self.backoff = settings.backoff()
        self.failed_attempts = 0  # attempts that ended without a session, since start (benchmarks read it)
        self._hook_message, self._hook_connect = on_message, on_connect
        self._hook_disconnect, self._hook_publish = on_disconnect, on_publish
        self._hook_subscribe = on_subscribe
        self._subscribe_mid: int | None = None
        self._v5 = settings.protocol == "5"
        # 3.1.1 has no session expiry: the session is kept (forever) only if asked for
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else session_expiry_s is None,
        )
        if settings.username:
            self.client.username_pw_set(settings.username, settings.secret())
        if settings.tls:
            self.client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            self.client.tls_insecure_set(settings.tls_insecure)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if manual_ack:
            self.client.manual_ack_set(True)
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)
        # paho's default: the outgoing queue is unbounded (0), so a publish while offline is kept
        self.client.max_queued_messages_set(0)
        # TCP connect and TLS handshake, each: long enough for the kernel's own SYN retransmits
        self.client.connect_timeout = settings.connect_timeout_s
        # paho's own backoff doubles without jitter (a fleet stays in lockstep); its loop calls this
        # wait before every new attempt, and each wait is one draw of our schedule (see _reconnect_wait)
        self._next_wait = 0.0
        self._wait_lock = threading.Lock()
        self._stopping = threading.Event()
        self.client._reconnect_wait = self._reconnect_wait  # type: ignore[method-assign]
        if hasattr(self.client, "_on_message_filtered"):  # paho 2.x internals; see _NoTopicCallbacks
            self.client._on_message_filtered = _NoTopicCallbacks()  # type: ignore[assignment]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect_fail = self._on_connect_fail

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MqttSession:
        """Connect in the background; paho keeps reconnecting on the schedule until :meth:`stop`."""
        self._stopping.clear()
        kwargs: dict[str, Any] = {"keepalive": self.settings.keepalive_s}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry_s is not None:
                props.SessionExpiryInterval = self.session_expiry_s
                kwargs["clean_start"] = False  # resume the broker's copy of our session, every time
            if self.receive_maximum is not None:
                # back-pressure: the broker hands us at most this many un-acked messages
                props.ReceiveMaximum = self.receive_maximum
            kwargs["properties"] = props
        self.client.connect_async(self.settings.host, self.settings.port, **kwargs)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self) -> None:
        """DISCONNECT (so the broker does not send the will), then end the network thread."""
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    # ------------------------------------------------------------------ traffic

    def resubscribe(self, fresh: Sequence[Subscription]) -> tuple[list[str], list[str]]:
        """Change the subscription list while connected; return (added, removed) filters.

        ``subscribed`` is cleared until the broker's SUBACK for the added filters arrives, so a
        caller can tell when messages on them start to reach it; the next (re)connect
        subscribes the whole new list anyway.
        """
        added, gone = subscription_changes(self.subscriptions, fresh)
        if added:
            self.subscribed.clear()  # before the list changes: a reader seeing the new list waits for its SUBACK
        self.subscriptions = list(fresh)
        if gone:
            self.client.unsubscribe(gone)
        if added:
            self._subscribe_mid = self.client.subscribe(cast(Any, paho_subscriptions(added)))[1]
        return [f for f, _ in added], gone

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> MessageInfo:
        """Queue a message; the returned info turns published at the PUBACK (QoS 1), even across a reconnect."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, mid: int, qos: int) -> None:
        """Manual-ack mode: PUBACK one received message (only on the connection that delivered it)."""
        self.client.ack(mid, qos)

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _call(self, what: str, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # never raise into paho's thread: it would stop the session for good
            log.exception("%s hook of %s failed", what, self.client_id)

    def _wait_next(self, delay_s: float) -> None:
        """The wait before paho's next attempt: every attempt ends in on_connect_fail or on_disconnect,
        which draw it from the schedule before paho's loop waits."""
        with self._wait_lock:
            self._next_wait = delay_s

    def _reconnect_wait(self) -> None:
        """Replaces paho's wait (``Client._reconnect_wait``, a doubling without jitter).

        The drawn wait is used once: paho's loop waits twice after a first connect that failed
        (once in its connect loop, once in its read loop) with no attempt in between, and that
        second wait must not add another delay. :meth:`stop` ends a wait at once.
        """
        with self._wait_lock:
            delay, self._next_wait = self._next_wait, 0.0
        self._stopping.wait(delay)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object = None) -> None:
        self.connect_rc = rc
        if rc.is_failure:
            # the broker closes the connection next: on_disconnect counts the failure and sets the wait
            log.error("broker %s refused %s: %s (check mqtt.username / password / TLS)",
                      self.settings.url, self.client_id, rc)
            return
        log.info("%s connected to %s", self.client_id, self.settings.url)
        self.backoff.connected()
        if self.subscriptions:
            # subscribed again on every connect: a session the broker lost (expired, restarted
            # without persistence) would otherwise stay silent
            self._subscribe_mid = client.subscribe(cast(Any, paho_subscriptions(self.subscriptions)))[1]
        self.connected.set()
        self._call("connect", self._hook_connect)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object = None) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        # a refused CONNACK also ends in a disconnect: the hook hears only of established connections lost,
        # so a wrong password logs one error per attempt, not an error and a warning
        if was_connected:
            self._wait_next(self.backoff.after_loss())
            self._call("disconnect", self._hook_disconnect, rc)
        else:
            self._failed()  # e.g. TLS 1.3 refuses a client certificate only after the handshake

    def _on_message(self, _c: mqtt.Client, _u: object, msg: Message) -> None:
        self._call("message", self._hook_message, msg)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object = None) -> None:
        self._call("publish", self._hook_publish, mid, rc)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode],
                      _p: object = None) -> None:
        if mid == self._subscribe_mid:
            self.subscribed.set()
        self._call("subscribe", self._hook_subscribe, mid, codes)

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        self._failed()  # TCP connect refused or timed out, TLS handshake failed or timed out

    def _failed(self) -> None:
        self.failed_attempts += 1
        self._wait_next(self.backoff.after_failure())
        self.connect_failed.set()
