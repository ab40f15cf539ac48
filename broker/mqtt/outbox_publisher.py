"""Outbox -> broker at QoS 1 under a service's own identity: the QMS bridge's and the web rating service's.

Through the shared session wrapper (broker.mqtt.session: randomised, capped reconnects). An
event leaves its outbox (broker/mqtt/outbox.py, which qms_bridge/outbox.py extends) only on its PUBACK;
paho keeps un-acked messages across reconnects and resends them, and after a restart everything still pending is
published again (same event id: the receivers de-duplicate, QoS 1 is at least once).

A service may also keep a retained status (``status_topic``) with an offline last will; the
payload comes from the service (``status(online)``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .session import LastWill, MqttSession, ReasonCode
from .settings import MqttSettings

MAX_IN_FLIGHT = 100
RETRY_REFUSED_S = 5.0


class Item(Protocol):
    """One queued message (broker/mqtt/outbox.py's Pending, what the web's and the QMS bridge's outboxes return)."""

    @property
    def event_id(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class Drainable(Protocol):
    """An outbox this publisher drains: what is pending, in order, and "the broker has it"."""

    def pending(self, after_seq: int = 0, limit: int = 100) -> Sequence[Item]: ...

    def acked(self, event_id: str) -> None: ...


class OutboxPublisher:
    """Drains an outbox to the broker on its own thread."""

    def __init__(self, settings: MqttSettings, client_id: str, outbox: Drainable, *,
                 status_topic: str | None = None, status: Callable[[bool], bytes] | None = None,
                 status_interval_s: float = 30.0, on_acked: Callable[[Any], None] | None = None,
                 name: str = "outbox-publisher", log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.outbox = outbox
        self.status_topic = status_topic
        self._status_payload = status
        self.status_interval_s = status_interval_s
        self.on_acked = on_acked
        self.log = log or logging.getLogger(f"hailong.{name}")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, Item] = {}
        self._submitted: set[str] = set()
        self._refused_until: dict[str, float] = {}
        self._early: dict[int, tuple[Any, float]] = {}
        self.connected = threading.Event()
        self.acked_count = 0
        self.started = time.monotonic()
        will = (LastWill(status_topic, status(False)) if status_topic is not None and status is not None
                else None)
        self.session = MqttSession(settings, client_id[:64], will=will, on_connect=self._on_connect,
                                   on_disconnect=self._on_disconnect, on_publish=self._on_publish)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.session.start()
        self._thread.start()

    def stop(self, drain_s: float = 2.0) -> None:
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._inflight and self.connected.is_set():
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        if self.connected.is_set() and self.status_topic is not None and self._status_payload is not None:
            info = self.session.publish(self.status_topic, self._status_payload(False), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.session.stop()

    def wake(self) -> None:
        self._wake.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def publish_status(self) -> None:
        if self.connected.is_set() and self.status_topic is not None and self._status_payload is not None:
            self.session.publish(self.status_topic, self._status_payload(True), qos=1, retain=True)

    # ------------------------------------------------------------------ paho callbacks (paho's thread)
    def _on_connect(self) -> None:
        # a refused CONNACK is logged by the session and never reaches this hook
        self.log.info("connected to the broker as %s", self.settings.username)
        self.connected.set()
        self.publish_status()
        self._wake.set()

    def _on_disconnect(self, reason: ReasonCode) -> None:
        self.connected.clear()
        self.log.warning("disconnected from the broker (%s); outbox keeps the events", reason)

    def _on_publish(self, mid: int, reason: ReasonCode) -> None:
        with self._lock:
            item = self._inflight.pop(mid, None)
            if item is None:
                # the status message, or a PUBACK faster than our bookkeeping after publish(): keep it briefly
                self._early[mid] = (reason, time.monotonic())
                return
        self._settle(item, reason)

    def _settle(self, item: Item, reason: Any) -> None:
        if getattr(reason, "is_failure", False):
            # e.g. not authorised (ACL): keep it, say so, and try again later
            self.log.error("broker refused event %s on %s: %s", item.event_id, item.topic, reason)
            with self._lock:
                self._submitted.discard(item.event_id)
                self._refused_until[item.event_id] = time.monotonic() + RETRY_REFUSED_S
            return
        self.outbox.acked(item.event_id)
        with self._lock:
            self._submitted.discard(item.event_id)
        self.acked_count += 1
        if self.on_acked is not None:
            self.on_acked(item)
        self._wake.set()

    # ------------------------------------------------------------------ outbox drain
    def _run(self) -> None:
        last_status = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._submit()
            except Exception:  # keep draining after a transient SQLite/paho error, loudly
                self.log.exception("publishing from the outbox failed; retrying")
            if time.monotonic() - last_status >= self.status_interval_s:
                last_status = time.monotonic()
                self.publish_status()

    def _submit(self) -> None:
        with self._lock:
            room = MAX_IN_FLIGHT - len(self._inflight)
            skip = set(self._submitted)
            now = time.monotonic()
            skip |= {e for e, until in self._refused_until.items() if until > now}
            stale = [m for m, (_, t) in self._early.items() if now - t > 60]
            for m in stale:
                del self._early[m]
        if room <= 0:
            return
        for item in self.outbox.pending(limit=room + len(skip)):
            if room <= 0:
                break
            if item.event_id in skip:
                continue
            # paho queues it while disconnected and sends it on (re)connect. Not under our lock:
            # paho calls on_publish holding its own message lock, which publish() also takes.
            info = self.session.publish(item.topic, item.payload, qos=1)
            with self._lock:
                self._submitted.add(item.event_id)
                self._refused_until.pop(item.event_id, None)
                early = self._early.pop(info.mid, None)
                if early is None:
                    self._inflight[info.mid] = item
            if early is not None:
                self._settle(item, early[0])
            room -= 1

