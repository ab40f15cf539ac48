"""A lean MQTT consumer for the ingest: persistent session, QoS 1 in, PUBACKs sent in batches.

Why not :class:`~broker.mqtt.session.MqttSession` (paho) here: a paho MQTT 5 client that
does nothing but ack costs 62 µs of CPU per message on the reference machine (issue 14, its
``Properties`` objects and per-message callbacks alone were 10 % of an ingest worker), more
than the ingest's whole budget of 60 µs per rating. This client reads the socket in large
chunks, decodes each PUBLISH inline (topic, packet id, retain flag, payload; its properties
are skipped: the ingest reads none of them and never allows topic aliases), and sends the
PUBACKs of a whole written batch in one ``sendall``. Everything that publishes (terminals,
bridges, simulators) keeps using MqttSession: paho is the better client for publishing.

Same delivery rules as MqttSession, which the ingest relies on:
- ``session_expiry_s`` set = persistent session (MQTT 5 clean start off + Session Expiry
  Interval; 3.1.1 clean session off): the broker keeps what we have not acked while we are away;
- nothing is acked until the caller says so (:meth:`ack_many`), and only on the connection that
  delivered it (the caller's hooks see every connect and disconnect, in order, on this thread);
- MQTT 5 Receive Maximum: the broker hands us at most that many un-acked messages;
- the subscription list is subscribed again on every connect; :meth:`resubscribe` changes it;
- reconnect on the fleet's randomised, capped schedule (backoff.py, settings ``reconnect_*``);
  TCP connect and TLS handshake time out after ``connect_timeout_s``; a refused CONNACK is
  logged with the broker's reason.

Hooks run on the network thread; an exception in one is logged and swallowed. ``on_message``
may block (the ingest's budget does): the socket is then not read, TCP pushes back on the broker.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import wire
from .handshake import tls_context
from .settings import MqttSettings
from .splitter import MessageHook, split_packets
from .subscriptions import Subscription, options_byte, subscription_changes

log = logging.getLogger("hailong.mqtt")

RECV_BYTES = 256 * 1024
# (UN)SUBSCRIBE packets stay under the rendered broker's max_packet_size (broker/mosquitto/render.py,
# 9 KiB): an ingest partition of a large province subscribes hundreds of centre filters
FILTER_PACKET_BYTES = 6_000


class MqttConsumer:
    """:meth:`start`, :meth:`ack_many` from any thread, :meth:`stop`."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        subscriptions: Sequence[Subscription],
        on_message: MessageHook,
        session_expiry_s: int | None = None,
        receive_maximum: int | None = None,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,  # an established connection ended; why
        drop_on_connect: Sequence[str] = (),  # filters a session made earlier may hold: unsubscribed
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.drop_on_connect = [f for f in drop_on_connect if f not in dict(self.subscriptions)]
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.backoff = settings.backoff()
        self.failed_attempts = 0  # attempts that ended without a session, since start
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the SUBACK of the latest subscription change arrived
        self.connect_failed = threading.Event()  # an attempt ended without a session
        self.connect_rc: int | None = None  # the last CONNACK's reason code
        self._on_message, self._on_connect, self._on_disconnect = on_message, on_connect, on_disconnect
        self._v5 = settings.protocol == "5"
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()  # acks (writer thread), pings and subscribes (other threads)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_id = 0
        self._subscribe_id: int | None = None
        self._last_sent = 0.0
        self._keepalive_s = settings.keepalive_s  # the broker's Server Keep Alive replaces it (MQTT 5)
        self._pending = b""  # bytes read with the CONNACK that belong to the next packets
        self._topics: dict[bytes, str] = {}
        self._tls = tls_context(settings) if settings.tls else None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MqttConsumer:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """DISCONNECT (normal: the broker keeps the session), close, end the network thread."""
        self._stop.set()
        self._send(wire.DISCONNECT_PACKET)
        self._close()
        if self._thread is not None:
            self._thread.join(timeout)
        self.connected.clear()

    # ------------------------------------------------------------------ from other threads

    def ack_many(self, packet_ids: list[int]) -> None:
        """PUBACK these QoS 1 messages, in one write. Call only for the current connection's messages."""
        if packet_ids:
            self._send(wire.pubacks(packet_ids))

    def resubscribe(self, fresh: Sequence[Subscription]) -> tuple[list[str], list[str]]:
        """Change the subscription list while connected; return (added, removed) filters.

        ``subscribed`` is cleared until the SUBACK for the added filters arrives; the next
        (re)connect subscribes the whole new list anyway.
        """
        added, gone = subscription_changes(self.subscriptions, fresh)
        if added:
            self.subscribed.clear()
        self.subscriptions = list(fresh)
        if gone:
            self._unsubscribe(gone, last_settles=False)
        if added:
            self._subscribe(added)
        return [f for f, _ in added], gone

    # ------------------------------------------------------------------ network thread

    def _run(self) -> None:
        while not self._stop.is_set():
            established = False
            why = "connection closed"
            try:
                established = self._connect()
                if established:
                    self.backoff.connected()
                    why = self._read_loop()
            except (OSError, wire.ProtocolError, ValueError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                if not established:
                    log.warning("%s cannot connect to %s: %s", self.client_id, self.settings.url, why)
            except Exception as exc:  # e.g. bytes we cannot index: never end the thread, re-make the session
                why = f"{type(exc).__name__}: {exc}"
                log.exception("%s: unexpected error on the MQTT connection; reconnecting", self.client_id)
            finally:
                self._close()
            if established:
                self.connected.clear()
                self._hook("disconnect", self._on_disconnect, why)
                delay = self.backoff.after_loss()
            else:
                self.failed_attempts += 1
                self.connect_failed.set()
                delay = self.backoff.after_failure()
            if self._stop.wait(delay):
                return

    def _connect(self) -> bool:
        """TCP (+TLS), CONNECT, CONNACK, SUBSCRIBE. False when the broker refused us."""
        s = self.settings
        # one timeout for the TCP connect, the TLS handshake and the CONNACK: long enough for SYN retransmits
        raw = socket.create_connection((s.host, s.port), timeout=s.connect_timeout_s)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = self._tls.wrap_socket(raw, server_hostname=s.host) if self._tls else raw
        self._sock = sock
        persistent = self.session_expiry_s is not None
        self._send(wire.connect(
            self.client_id, v5=self._v5, keepalive_s=s.keepalive_s, username=s.username, password=s.secret(),
            clean_start=not persistent, session_expiry_s=self.session_expiry_s if self._v5 else None,
            receive_maximum=self.receive_maximum if self._v5 else None))
        first, body, rest = self._read_packet(b"")
        if first >> 4 != wire.CONNACK:
            raise wire.ProtocolError(f"expected CONNACK, got packet type {first >> 4}")
        ack = wire.read_connack(body, self._v5)
        self.connect_rc = ack.code
        if ack.code != 0:
            log.error("broker %s refused %s: %s%s (check mqtt.username / password / TLS)", s.url,
                      self.client_id, wire.reason_name(ack.code, self._v5), f": {ack.reason}" if ack.reason else "")
            self.connect_failed.set()
            return False
        self._keepalive_s = ack.server_keepalive_s or s.keepalive_s  # §3.2.2.3.14: the broker's value wins
        self._pending = rest
        log.info("%s connected to %s", self.client_id, s.url)
        self.subscribed.clear()
        if self.drop_on_connect:  # before subscribing: nothing is delivered twice through an old filter
            self._unsubscribe(self.drop_on_connect, last_settles=not self.subscriptions)
        if self.subscriptions:
            # subscribed again on every connect: a session the broker lost would otherwise stay silent
            self._subscribe(self.subscriptions)
        elif not self.drop_on_connect:
            self.subscribed.set()  # nothing to ask of the broker
        self.connected.set()
        self._hook("connect", self._on_connect)
        return True

    def _read_packet(self, buf: bytes) -> tuple[int, bytes, bytes]:
        """One whole packet from ``buf`` + the socket: (first byte, body, bytes after it)."""
        assert self._sock is not None
        while True:
            if len(buf) >= 2:
                got = wire.read_varint(buf, 1)
                if got is not None and len(buf) >= got[1] + got[0]:
                    end = got[1] + got[0]
                    return buf[0], buf[got[1]:end], buf[end:]
            chunk = self._sock.recv(RECV_BYTES)
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk

    def _read_loop(self) -> str:
        """Read until the connection ends; returns why it ended."""
        sock = self._sock
        assert sock is not None
        keepalive = self._keepalive_s
        sock.settimeout(min(1.0, keepalive / 2))
        v5, on_message, topics, control = self._v5, self._on_message, self._topics, self._control
        buf = self._pending
        last_heard = time.monotonic()
        while not self._stop.is_set():
            pos = split_packets(buf, v5, topics, on_message, control, self.client_id)
            buf = buf[pos:]
            try:
                chunk = sock.recv(RECV_BYTES)
            except TimeoutError:
                chunk = None
            now = time.monotonic()
            if chunk is not None:
                if not chunk:
                    return "broker closed the connection"
                buf += chunk
                last_heard = now
            elif now - last_heard > 1.5 * keepalive + 1:
                return f"nothing heard from the broker for {now - last_heard:.0f} s (keepalive {keepalive} s)"
            if now - self._last_sent >= keepalive * 0.75:
                self._send(wire.PINGREQ_PACKET)
        return "stopped"

    def _control(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == wire.SUBACK:
            packet_id, codes = wire.read_ack_codes(body, self._v5)
            refused = [c for c in codes if c >= 0x80]
            if refused:
                log.error("broker refused a subscription of %s: %s", self.client_id,
                          ", ".join(wire.reason_name(c, self._v5) for c in refused))
            if packet_id == self._subscribe_id:
                self.subscribed.set()
        elif kind == wire.DISCONNECT:
            code, reason = wire.read_disconnect(body, self._v5)
            raise ConnectionError(f"broker disconnected {self.client_id}: {wire.reason_name(code, self._v5)}"
                                  + (f": {reason}" if reason else ""))
        elif kind == wire.UNSUBACK:
            if len(body) >= 2 and (body[0] << 8 | body[1]) == self._subscribe_id:
                self.subscribed.set()  # a list of drops with nothing to subscribe after it
        elif kind in (wire.PINGRESP, wire.PUBACK):
            return  # PUBACK: this client publishes nothing
        else:
            raise wire.ProtocolError(f"unexpected packet type {kind} from the broker")

    # ------------------------------------------------------------------ sending

    def _packet_id(self) -> int:
        with self._send_lock:
            self._next_id = self._next_id % 0xFFFF + 1
            return self._next_id

    def _subscribe(self, subs: Sequence[Subscription]) -> None:
        """SUBSCRIBE in packets the broker accepts; ``subscribed`` is set by the last one's SUBACK."""
        options = dict(subs)
        for chunk in _chunks(list(options)):
            packet_id = self._packet_id()
            self._subscribe_id = packet_id
            self._send(wire.subscribe(packet_id, [(f, options_byte(options[f])) for f in chunk], self._v5))

    def _unsubscribe(self, filters: Sequence[str], *, last_settles: bool) -> None:
        """UNSUBSCRIBE in packets the broker accepts; with ``last_settles`` (nothing to subscribe after
        it) the last one's UNSUBACK sets ``subscribed``."""
        for chunk in _chunks(list(filters)):
            packet_id = self._packet_id()
            if last_settles:
                self._subscribe_id = packet_id
            self._send(wire.unsubscribe(packet_id, chunk, self._v5))

    def _send(self, data: bytes) -> None:
        """Never raises: a dead socket is noticed (and re-made) by the network thread."""
        with self._send_lock:
            sock = self._sock
            if sock is None:
                return
            try:
                sock.sendall(data)
                self._last_sent = time.monotonic()
            except OSError as exc:
                log.debug("%s: send failed (%s); the network thread reconnects", self.client_id, exc)

    def _close(self) -> None:
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the broker
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _hook(self, what: str, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("%s hook of %s failed", what, self.client_id)


def _chunks(filters: list[str]) -> list[list[str]]:
    """``filters`` in runs of at most FILTER_PACKET_BYTES of encoded filter (never an empty run)."""
    out: list[list[str]] = [[]]
    size = 0
    for f in filters:
        n = len(f.encode()) + 3  # length prefix + options byte
        if out[-1] and size + n > FILTER_PACKET_BYTES:
            out.append([])
            size = 0
        out[-1].append(f)
        size += n
    return out if out[0] else []
