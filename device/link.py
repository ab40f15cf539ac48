"""The terminal's MQTT link: drains the outbox, listens to its QMS and config topics, reports status.

- One :class:`broker.mqtt.session.MqttSession`: QoS 1, persistent session (a week), so QMS
  events and config updates published while the terminal was offline still reach it;
  reconnects by itself on the fleet's randomised, capped schedule (``[mqtt] reconnect_*``).
- Drains the outbox in seq order with a bounded window of in-flight messages,
  from one drain thread; a rating is deleted only once its PUBACK arrived. paho re-sends in-flight
  messages after a reconnect; after a crash the outbox re-sends everything not
  acknowledged, so delivery is at-least-once and the ingest dedupes by event_id
  (its InfluxDB writes are idempotent).
- ``sent_at`` is stamped when the message is handed to the connected client.
- Retained ``status`` (online) at connect and every heartbeat; LWT = offline.
- Retained ``config`` updates are parsed and handed to ``on_config``.

Callbacks (``on_qms``, ``on_config``) run on paho's thread: the caller passes
a ``dispatch`` function that moves them to its own thread (Kivy Clock, or the
headless loop).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from broker.contract import (
    ContractError,
    DeviceConfigUpdate,
    DeviceStatus,
    QmsEvent,
    config_topic,
    parse_config_update,
    parse_qms,
    qms_topic,
    rating_topic,
    status_topic,
)
from broker.mqtt.session import LastWill, Message, MessageInfo, MqttSession, ReasonCode, acknowledged
from broker.mqtt.settings import MqttSettings

from .outbox import Outbox

log = logging.getLogger("hailong.device.link")

WINDOW = 32  # ratings in flight at once; bounds memory when a large backlog drains
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our subscriptions and queued QMS events a week


@functools.cache
def hailong_version() -> str:
    """The installed hailong's version, read once per process: every status heartbeat carries it, and
    importlib.metadata parses the package's METADATA (an email-format file) on every call -- hot in a
    profile of 2,000 simulated terminals. An upgrade restarts the terminal, so it cannot go stale."""
    try:
        from importlib.metadata import version

        return version("hailong")[:32]
    except Exception:
        return "0"


def cpu_temp_c() -> float | None:
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def _run_inline(fn: Callable[[], None]) -> None:
    fn()


class DeviceLink:
    def __init__(self, mqtt_settings: MqttSettings, *, device: str, centre: str, counter: str, outbox: Outbox,
                 on_qms: Callable[[QmsEvent], None] | None = None,
                 on_config: Callable[[DeviceConfigUpdate], None] | None = None,
                 state: Callable[[], str | None] | None = None,
                 dispatch: Callable[[Callable[[], None]], None] = _run_inline,
                 heartbeat_s: float = 60.0) -> None:
        self.settings = mqtt_settings
        self.device, self.centre, self.counter = device, centre, counter
        self.outbox = outbox
        self.on_qms = on_qms
        self.on_config = on_config
        self.state = state or (lambda: None)
        self.dispatch = dispatch
        self.heartbeat_s = heartbeat_s
        self.started_mono = time.monotonic()
        self.acked = 0
        # Only the drain thread publishes ratings and touches _inflight. paho calls on_publish while
        # holding its own message lock, so that callback must never wait for a lock of ours that
        # is held around client.publish (lock-order deadlock): it only records and wakes the drain.
        self._inflight: deque[tuple[MessageInfo, int]] = deque()
        self._refused: dict[int, str] = {}  # mid -> MQTT 5 reason code of a refused rating
        self._refused_lock = threading.Lock()  # never held while calling paho
        self._published_upto = -1
        self._last_config_at = -1
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._status_topic = status_topic(centre, device)
        self.session = MqttSession(
            mqtt_settings, device,
            subscriptions=[(qms_topic(centre, counter), 1), (config_topic(centre, device), 1)],
            session_expiry_s=SESSION_EXPIRY_S, max_inflight=WINDOW,
            will=LastWill(self._status_topic, self._status(online=False).to_json()),
            on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_publish=self._on_publish, on_message=self._on_message,
        )
        self.connected = self.session.connected

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DeviceLink:
        self.session.start()
        threading.Thread(target=self._heartbeat_loop, name="hl-heartbeat", daemon=True).start()
        threading.Thread(target=self._drain_loop, name="hl-drain", daemon=True).start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop: retained offline status, then disconnect (the LWT is for ungraceful ones)."""
        self._stop.set()
        self._kick.set()
        if self.connected.is_set():
            info = self.session.publish(self._status_topic, self._status(online=False).to_json(), retain=True)
            info.wait_for_publish(timeout)
        self.session.stop()

    def kick(self) -> None:
        """A rating was just committed: publish it soon, on the drain thread (never blocks the UI)."""
        self._kick.set()

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(5.0)  # the timeout also retries anything a lost connection left behind
            self._kick.clear()
            if self._stop.is_set():
                return
            try:
                self._collect_acks()
                self._pump()
            except Exception:
                log.exception("outbox drain failed")

    # ------------------------------------------------------------------ status

    def _status(self, online: bool) -> DeviceStatus:
        return DeviceStatus(
            v=1, device=self.device, centre=self.centre, online=online,
            outbox_depth=self.outbox.depth if online else 0,
            outbox_nearly_full=self.outbox.nearly_full if online else False,
            uptime_s=int(time.monotonic() - self.started_mono) if online else 0,
            cpu_temp_c=cpu_temp_c() if online else None, version=hailong_version(),
            state=self.state() if online else None, at=time.time_ns() // 1_000_000 if online else None,
        )

    def publish_status(self) -> None:
        if self.connected.is_set():
            self.session.publish(self._status_topic, self._status(online=True).to_json(), retain=True)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.publish_status()
            except Exception:
                log.exception("heartbeat failed")

    # ------------------------------------------------------------------ outbox drain

    def _pump(self) -> None:
        if not self.connected.is_set():
            return
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        for seq, event in self.outbox.pending(self._published_upto, room):
            stamped = event.model_copy(update={"sent_at": time.time_ns() // 1_000_000})
            # even if the socket just dropped, paho keeps the message queued and sends it after
            # reconnecting; its MQTTMessageInfo turns "published" at the PUBACK either way
            info = self.session.publish(rating_topic(event.centre, event.device), stamped.to_json())
            self._inflight.append((info, seq))
            self._published_upto = seq

    def _collect_acks(self) -> None:
        """Delete (or park) every in-flight rating the broker has acknowledged."""
        waiting: deque[tuple[MessageInfo, int]] = deque()
        for info, seq in self._inflight:
            if not acknowledged(info):
                waiting.append((info, seq))
                continue
            with self._refused_lock:
                refused = self._refused.pop(info.mid, None)
            if refused is not None:
                log.error("broker refused rating seq %s: %s; parked in the outbox", seq, refused)
                self.outbox.park(seq, refused)
            else:
                self.outbox.delete(seq)
                self.acked += 1
        self._inflight = waiting

    def _on_publish(self, mid: int, rc: ReasonCode) -> None:
        if rc.is_failure:
            with self._refused_lock:
                self._refused[mid] = str(rc)
        self._kick.set()

    # ------------------------------------------------------------------ connection

    def _on_connect(self) -> None:
        self.publish_status()
        self._kick.set()  # the drain thread publishes what waits in the outbox

    def _on_disconnect(self, rc: ReasonCode) -> None:
        log.warning("disconnected from broker: %s; %d ratings wait in the outbox", rc, self.outbox.depth)

    def _on_message(self, msg: Message) -> None:
        try:
            if msg.topic.endswith("/config"):
                update = parse_config_update(bytes(msg.payload))
                if update.issued_at <= self._last_config_at:
                    return  # an older retained update than one already applied
                self._last_config_at = update.issued_at
                if self.on_config is not None:
                    cb, upd = self.on_config, update
                    self.dispatch(lambda: cb(upd))
            else:
                event = parse_qms(bytes(msg.payload))
                if event.counter != self.counter:
                    log.warning("QMS event for counter %s on %s ignored", event.counter, msg.topic)
                    return
                if self.on_qms is not None:
                    cbq, ev = self.on_qms, event
                    self.dispatch(lambda: cbq(ev))
        except ContractError as exc:
            log.warning("ignored bad message on %s: %s", msg.topic, exc)
