"""The ingest loop: MQTT (QoS 1, manual ack) -> validate -> batch -> InfluxDB -> ack.

Threads:
- paho's network thread only enqueues messages (never blocks, never raises);
- one worker thread batches, converts, writes, and acks after the write.

Back-pressure comes from MQTT 5 "receive maximum": the broker hands us at most
``batch.max_in_flight`` un-acked messages, so memory is bounded while InfluxDB
is down and everything not yet written stays on the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker.contract import TopicKind, subscription
from broker.mqtt import make_client

from .config import IngestConfig
from .handlers import Handled, MessageHandler
from .lineproto import Point
from .stats import IngestStats
from .writer import WriteError, Writer, make_writer

log = logging.getLogger("hailong.ingest")


@dataclass(frozen=True, slots=True)
class Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ns: int


class IngestService:
    def __init__(
        self,
        config: IngestConfig,
        writer: Writer | None = None,
        handler: MessageHandler | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.stats = IngestStats()
        self.writer = writer or make_writer(config.influx)
        self.handler = handler or MessageHandler(config, self.stats, clock_ns)
        self._inbox: queue.Queue[Inbound] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker: threading.Thread | None = None
        self._client = make_client(config.mqtt, config.client_id)
        self._client.manual_ack_set(True)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)

    # ------------------------------------------------------------------ MQTT callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused connection: %s", rc)
            return
        group = self.config.share_group
        subs = [
            (subscription(TopicKind.RATING, share_group=group), 1),
            (subscription(TopicKind.STATUS, share_group=group), 1),
            # QMS is never shared: every instance must know every closed ticket.
            (subscription(TopicKind.QMS), 1),
        ]
        client.subscribe(subs)
        log.info("connected to %s, subscribed %s", self.config.mqtt.url, [s for s, _ in subs])
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); paho reconnects", rc)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put_nowait(Inbound(msg.mid, msg.qos, msg.topic, bytes(msg.payload), time.time_ns()))
            self.stats.received += 1
        except Exception:  # never raise into paho's thread
            log.exception("could not enqueue message on %s", getattr(msg, "topic", "?"))

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_connected: float = 10.0) -> IngestService:
        props = None
        if self.config.mqtt.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.config.session_expiry_s
            props.ReceiveMaximum = self.config.batch.max_in_flight
        kwargs: dict[str, object] = {"keepalive": self.config.mqtt.keepalive_s, "properties": props}
        if self.config.mqtt.protocol == "5":
            kwargs["clean_start"] = False
        self._client.connect_async(self.config.mqtt.host, self.config.mqtt.port, **kwargs)  # type: ignore[arg-type]
        self._client.loop_start()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        if wait_connected and not self._connected.wait(wait_connected):
            log.warning("not connected to %s after %.0fs; still trying", self.config.mqtt.url, wait_connected)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Flush and ack what is buffered, then disconnect (SIGTERM path)."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self.writer.close()
        log.info("stopped: %s", self.stats.summary())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------------ worker

    def _collect(self) -> list[Inbound]:
        batch: list[Inbound] = []
        cfg = self.config.batch
        try:
            first = self._inbox.get(timeout=0.1)
        except queue.Empty:
            return batch
        batch.append(first)
        deadline = time.monotonic() + cfg.max_delay_ms / 1000
        while len(batch) < cfg.size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while True:
            if self._stop.is_set() and self._inbox.empty():
                return
            batch = self._collect()
            if not batch:
                continue
            try:
                self._process(batch)
            except Exception:  # a bug must not kill the worker: messages stay un-acked
                log.exception("unexpected error processing a batch of %d; not acked", len(batch))
                time.sleep(1)

    def _process(self, batch: list[Inbound]) -> None:
        started = time.monotonic()
        handled: list[Handled] = [self.handler.handle(m.topic, m.payload, m.received_ns) for m in batch]
        points = [p for h in handled for p in h.points]
        if points and not self._write_with_retry(points):
            return  # stopping with InfluxDB down: leave un-acked, broker redelivers
        for m in batch:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
        self.stats.acked += len(batch)
        self.stats.record_batch(len(points), time.monotonic() - started)

    def _write_with_retry(self, points: list[Point]) -> bool:
        cfg = self.config.batch
        delay = cfg.retry_initial_ms / 1000
        while True:
            try:
                self._write_splitting([p.to_line() for p in points], points)
                return True
            except WriteError as exc:
                self.stats.write_failures += 1
                log.warning("InfluxDB write of %d points failed, retry in %.1fs: %s", len(points), delay, exc)
                if self._stop.wait(delay):
                    # one last attempt so SIGTERM does not throw away a ready batch
                    try:
                        self._write_splitting([p.to_line() for p in points], points)
                        return True
                    except WriteError:
                        return False
                delay = min(delay * 2, cfg.retry_max_ms / 1000)

    def _write_splitting(self, lines: list[str], points: list[Point]) -> None:
        """Write; on a permanent 4xx bisect until the bad points are isolated, dead-letter them."""
        try:
            self.writer.write(lines)
            self.stats.written += len(lines)
            return
        except WriteError as exc:
            if exc.retryable:
                raise
            if len(lines) == 1:
                self.stats.count_rejected("write_rejected")
                log.error("point permanently rejected by InfluxDB, dead-lettered: %s", exc)
                dead = self.handler.dead_letter(points[0], str(exc))
                self.writer.write([dead.to_line()])
                return
        mid = len(lines) // 2
        self._write_splitting(lines[:mid], points[:mid])
        self._write_splitting(lines[mid:], points[mid:])
