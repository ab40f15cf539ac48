"""Outbox -> broker, QoS 1, under the centre's QMS identity (``svc.qms.<centre>``).

The only module of the bridge that talks MQTT, through the shared session wrapper
(broker.mqtt.session). An event leaves the outbox only
on its PUBACK; paho keeps un-acked messages across reconnects and resends them, and
after a restart everything still pending is published again (same event id: the
receivers de-duplicate, QoS 1 is at least once).

It also keeps the bridge's retained status (a DeviceStatus with device
``qms-bridge``) on ``hl/v1/{centre}/qms/bridge/status``, with an offline last will.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from broker.contract import QMS_BRIDGE_DEVICE, DeviceStatus, qms_bridge_status_topic
from broker.mqtt.session import LastWill, MqttSession, ReasonCode

from .config import BridgeConfig
from .outbox import Outbox, Pending

log = logging.getLogger("hailong.qms.publisher")
MAX_IN_FLIGHT = 100
RETRY_REFUSED_S = 5.0


class Publisher:
    """Drains the outbox to the broker on its own thread."""

    def __init__(self, cfg: BridgeConfig, outbox: Outbox, status: Callable[[], dict[str, Any]],
                 on_acked: Callable[[Pending], None] | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.status = status  # extra DeviceStatus fields (state, outbox depth), from the bridge
        self.on_acked = on_acked
        self.status_topic = qms_bridge_status_topic(cfg.centre)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._inflight: dict[int, Pending] = {}
        self._submitted: set[str] = set()
        self._refused_until: dict[str, float] = {}
        self._early: dict[int, tuple[Any, float]] = {}
        self.connected = threading.Event()
        self.acked_count = 0
        self.started = time.monotonic()
        settings = cfg.mqtt_user
        # the broker forces client id = username (svc.qms.<centre>); say the same so logs agree
        client_id = (settings.username or f"qms-bridge-{cfg.centre}")[:64]
        self.session = MqttSession(
            settings, client_id, will=LastWill(self.status_topic, self._status(False).to_json()),
            on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_publish=self._on_publish)
        self._thread = threading.Thread(target=self._run, name="qms-publisher", daemon=True)

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
        if self.connected.is_set():
            info = self.session.publish(self.status_topic, self._status(False).to_json(), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.session.stop()

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ status
    def _status(self, online: bool) -> DeviceStatus:
        extra = self.status() if online else {}
        return DeviceStatus.model_validate({
            "v": 1, "device": QMS_BRIDGE_DEVICE, "centre": self.cfg.centre, "online": online,
            "outbox_depth": extra.get("outbox_depth", 0), "uptime_s": int(time.monotonic() - self.started),
            "version": _version(), "state": extra.get("state") if online else "offline",
            "at": int(time.time() * 1000) if online else None,
        })

    def publish_status(self) -> None:
        if self.connected.is_set():
            self.session.publish(self.status_topic, self._status(True).to_json(), qos=1, retain=True)

    # ------------------------------------------------------------------ paho callbacks (paho's thread)
    def _on_connect(self) -> None:
        # a refused CONNACK is logged by the session and never reaches this hook
        log.info("connected to the broker as %s", self.cfg.mqtt_user.username)
        self.connected.set()
        self.publish_status()
        self._wake.set()

    def _on_disconnect(self, reason: ReasonCode) -> None:
        self.connected.clear()
        log.warning("disconnected from the broker (%s); outbox keeps the events", reason)

    def _on_publish(self, mid: int, reason: ReasonCode) -> None:
        with self._lock:
            item = self._inflight.pop(mid, None)
            if item is None:
                # the status message, or a PUBACK faster than our bookkeeping after publish(): keep it briefly
                self._early[mid] = (reason, time.monotonic())
                return
        self._settle(item, reason)

    def _settle(self, item: Pending, reason: Any) -> None:
        if getattr(reason, "is_failure", False):
            # e.g. not authorised (ACL): keep it, say so, and try again later
            log.error("broker refused event %s on %s: %s", item.event_id, item.topic, reason)
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
                log.exception("publishing from the outbox failed; retrying")
            if time.monotonic() - last_status >= self.cfg.status_interval_s:
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


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hailong")[:32]
    except Exception:  # an uninstalled checkout still runs
        return os.environ.get("HAILONG_VERSION", "dev")[:32]
