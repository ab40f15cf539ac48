"""The ingest loop: MQTT (QoS 1, manual ack) -> judge -> batch -> InfluxDB -> ack.

Threads:
- the MQTT consumer's network thread only enqueues messages (it may wait on the budget, never raises);
- the worker thread judges and batches; it also re-judges held ratings,
  reloads the registry and feeds the liveness signal, so none of that state
  needs locks;
- the writer thread writes each batch (retrying) and then acks its messages, in
  batch order. One batch is judged while the previous one is being written
  (the handoff queue holds one batch, so memory stays bounded).

Back-pressure: MQTT 5 "receive maximum" asks the broker for at most
``batch.max_in_flight`` un-acked messages, and the ingest does not trust it: its
own budget (inbox.py, ``batch.max_unacked_messages`` / ``_bytes``) stops reading
from the broker when spent, so memory is bounded while InfluxDB is down and
everything not yet written stays on the broker (persistent session). Nothing is
acked before InfluxDB confirmed its points. Retained ratings/QMS: retained.py.

Before the first message is judged, the ticket index is rebuilt from InfluxDB
(see tickets.py); while InfluxDB cannot answer, the service does not connect
to the broker at all, so no valid rating is judged against an empty index.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from broker.kernel.health import HealthServer
from broker.kernel.systemd import sd_notify, watchdog_interval_s
from broker.mqtt.consumer import MqttConsumer
from storage.influxql import InfluxQueryError
from storage.lineproto import Point
from storage.writer import Writer, make_writer

from .config import IngestConfig
from .handlers import HELD, Handled, MessageHandler
from .inbox import Inbox, UnackedBudget
from .lookup import CloseLookup
from .partition import not_mine_filters, subscriptions
from .registry import RegistryHolder
from .retained import reject_retained, retain_forbidden
from .stats import IngestStats
from .writer import BatchWriter

log = logging.getLogger("hailong.ingest")
HOLD_RECHECK_S = 0.2
# a draining process (a retired worker's session) ends after this long with nothing left to store
DRAIN_IDLE_S = 3.0


class Inbound(NamedTuple):
    """One received message. A NamedTuple: built once per message on the network thread, and a frozen
    dataclass's __init__ cost a visible share of the worker (issue 14 profile)."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ns: int
    generation: int  # which broker connection delivered it: a mid is only valid on its own connection
    retain: bool = False


class IngestService:
    def __init__(
        self,
        config: IngestConfig,
        writer: Writer | None = None,
        handler: MessageHandler | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        registry: RegistryHolder | None = None,
    ) -> None:
        self.config = config
        self.stats = IngestStats()
        self._clock_ns = clock_ns
        self.registry = registry or RegistryHolder.from_path(config.registry, config.province)
        self.handler = handler or MessageHandler(config, self.stats, clock_ns, self.registry)
        # a web rating whose ticket is older than the index: looked up in InfluxDB on its own thread (lookup.py)
        self.lookup: CloseLookup | None = None
        if self.handler.judge.lookup is None:
            self.lookup = CloseLookup(config.influx.query_client(), config.batch.retry_initial_ms / 1000,
                                      config.batch.retry_max_ms / 1000)
            self.handler.judge.lookup = self.lookup
        self.batches = BatchWriter(writer or make_writer(config.influx), config.batch, self.stats,
                                   self.handler.dead_letter)
        self._inbox: Inbox[Inbound] = Inbox()  # the network thread -> the judge (inbox.py)
        self._held: list[Inbound] = []
        self.budget = UnackedBudget(config.batch.max_unacked_messages, config.batch.max_unacked_bytes)
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._generation = 0
        # held while bumping the generation (net thread) and while acking (writer thread): a PUBACK is
        # only ever queued for a message of the connection that delivered it
        self._generation_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        # (messages to ack, points, started, best_effort) or None = no more batches
        self._to_write: queue.Queue[tuple[list[Inbound], list[Point], float, bool] | None] = queue.Queue(1)
        self._heartbeat = time.monotonic()
        self._last_watchdog = 0.0
        self._ready_sent = False
        self._last_state = ""
        self._idle_since: float | None = None  # draining: since when nothing was left to store
        self.drained = threading.Event()  # draining: the retired session is empty, the process may end
        self._watchdog_every_s = min(5.0, watchdog_interval_s(5.0))  # at least twice per WatchdogSec
        self._health: HealthServer | None = None
        if config.mqtt.username and config.client_id != config.mqtt.username:
            log.warning("client_id %r differs from mqtt.username %r: a broker rendered by hailong names the "
                        "session after the username", config.client_id, config.mqtt.username)
        # the lean consumer, not paho (broker/mqtt/consumer.py: paho alone cost more than the whole
        # per-rating CPU budget of issue 14)
        self._session = MqttConsumer(
            config.mqtt, config.client_id,
            # partition.py: this instance's ratings and QMS (without retained replay, retained.py)
            subscriptions=subscriptions(config, self.registry.centre_ids()),
            # and nothing it does not own: a session from another worker count, partition or ratings_shared
            drop_on_connect=not_mine_filters(config, self.registry.centre_ids()),
            # persistent session + receive maximum: what is not yet written stays on the broker,
            # and at most max_in_flight un-acked messages are ever in our memory
            session_expiry_s=config.session_expiry_s, receive_maximum=config.batch.max_in_flight,
            on_connect=self._on_connect, on_disconnect=self._on_disconnect, on_message=self._on_message,
        )

    # ------------------------------------------------------------------ MQTT callbacks (network thread)

    def _on_connect(self) -> None:
        # a new connection: mids of the previous one must never be acked on this one
        with self._generation_lock:
            self._generation += 1
        log.info("subscribed %s", [s for s, _ in self._session.subscriptions])

    def _on_disconnect(self, why: str) -> None:
        with self._generation_lock:
            self._generation += 1  # from now on nothing of the dead connection is acked
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", why)

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> None:
        # the consumer logs and swallows an exception here; nothing in it is expected to raise
        self.budget.admit(len(payload), self._stop)  # waits here (the socket is not read) while spent
        self._inbox.put(Inbound(mid, qos, topic, payload, time.time_ns(), self._generation, retain))
        self.stats.received += 1

    # ------------------------------------------------------------------ lifecycle

    def rebuild_index(self) -> None:
        """Load recent tickets/ratings; retry with backoff until InfluxDB answers or we are stopped."""
        db = self.config.influx.query_client()
        lookback = self.config.integrity.index_lookback_s
        delay = self.config.batch.retry_initial_ms / 1000
        while not self._stop.is_set():
            try:
                self.handler.rebuild(db, lookback)
                return
            except InfluxQueryError as exc:
                log.warning("cannot rebuild the ticket index yet (retry in %.1fs): %s", delay, exc)
                self._beat()
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.batch.retry_max_ms / 1000)

    def start(self, wait_connected: float = 10.0) -> IngestService:
        if self.config.health.http_port is not None:
            self._health = HealthServer(self.config.health.http_port, self.health).start()
        self.rebuild_index()
        if self.lookup is not None:
            self.lookup.start()
        self._session.start()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._writer.start()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()
        if wait_connected and not self._session.wait_connected(wait_connected):
            log.warning("not connected to %s after %.0fs; still trying", self.config.mqtt.url, wait_connected)
        # READY=1 is sent by the worker loop once connected and subscribed (_beat), never on a timeout
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Flush and ack what is buffered, then disconnect (SIGTERM path). Held ratings stay un-acked."""
        sd_notify("STOPPING=1")
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._writer is not None:
            self._writer.join(timeout)
        self._session.stop()
        if self.lookup is not None:
            self.lookup.stop()
        self.batches.close()
        if self._health is not None:
            self._health.stop()
        log.info("stopped: %s", self.stats.summary())

    def request_stop(self) -> None:
        """Signal-safe: interrupt a start() still waiting for InfluxDB; stop() does the flush."""
        self._stop.set()

    def request_registry_reload(self) -> None:
        """Called from the SIGHUP handler; the worker reloads between batches."""
        self._reload_requested.set()

    @property
    def connected(self) -> bool:
        return self._session.connected.is_set()

    @property
    def ready(self) -> bool:
        """Connected and the broker confirmed the subscription list (SUBACK): ratings can reach us."""
        return self.connected and self._session.subscribed.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until :attr:`ready`, at most ``timeout`` s. Connected alone is not enough for a new session: the
        broker may still be reading our SUBSCRIBE, and a message published before it is never delivered to us
        (a restarted ingest's own persistent session has them already; a fresh client id does not)."""
        deadline = time.monotonic() + timeout
        return self._session.connected.wait(timeout) and \
            self._session.subscribed.wait(max(0.0, deadline - time.monotonic())) and self.ready

    @property
    def login_refused(self) -> bool:
        """The broker's last CONNACK refused us (bad user/password, not authorised): waiting will not help."""
        return self._session.connect_rc not in (None, 0)

    @property
    def mqtt_state(self) -> str:
        """What the supervisor hears with every watchdog ping (ingest/workers.py)."""
        return "ready" if self.ready else "refused" if self.login_refused else "connecting"

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health is not None else None

    def health(self) -> dict[str, Any]:
        """The /healthz body. "Alive" means the worker loop is turning; it also turns while it waits for
        InfluxDB to come back (an InfluxDB outage is no reason to restart the ingest, and a restart would
        not help). Whether the broker and InfluxDB are reachable is in the body, for humans and monitoring."""
        age = time.monotonic() - self._heartbeat
        return {
            # a login the broker refuses is not alive: the loop turns, but no rating can ever arrive
            "alive": age < self.config.health.stale_after_s and not self._stop.is_set() and not self.login_refused,
            "ready": self.ready,
            "login_refused": self.login_refused,
            "worker_age_s": round(age, 3),
            "mqtt_connected": self.connected,
            "influx_ok": self.batches.last_write_ok,
            "in_flight": self.stats.in_flight,
            "held": len(self._held),
            "unacked": self.budget.messages,
            "unacked_bytes": self.budget.bytes,
            "reading_paused": self.budget.paused,
            "received": self.stats.received,
            "acked": self.stats.acked,
        }

    def _beat(self) -> None:
        """From the worker loop: READY=1 once connected and subscribed, WATCHDOG=1 with the MQTT state.

        The state (``HAILONG_MQTT=ready|connecting|refused``, which systemd ignores) tells the
        worker supervisor whether this process can log in; it is sent at once when it changes.
        """
        now = time.monotonic()
        self._heartbeat = now
        state = self.mqtt_state
        if state == "ready" and not self._ready_sent:
            self._ready_sent = True
            sd_notify(f"READY=1\nHAILONG_MQTT={state}")
        if now - self._last_watchdog >= self._watchdog_every_s or state != self._last_state:
            self._last_watchdog, self._last_state = now, state
            sd_notify(f"WATCHDOG=1\nHAILONG_MQTT={state}")

    # ------------------------------------------------------------------ worker

    def _collect(self) -> list[Inbound]:
        cfg = self.config.batch
        return self._inbox.take(cfg.size, 0.1, cfg.max_delay_ms / 1000)

    def _work(self) -> None:
        last_poll = last_stats = time.monotonic()
        last_recheck = 0.0
        while True:
            self._beat()
            stopping = self._stop.is_set()
            batch = self._drain() if stopping else self._collect()
            now = time.monotonic()
            recheck = bool(self._held) and (bool(batch) or now - last_recheck >= HOLD_RECHECK_S)
            if batch or recheck:
                try:
                    self._process(batch, recheck)
                except Exception:  # a bug must not kill the worker: messages stay un-acked
                    log.exception("unexpected error processing a batch of %d; not acked", len(batch))
                    self._forget(batch)
                    self._stop.wait(1)
                last_recheck = now
            if stopping:
                # the last interval's counters too (a SIGTERM before the first interval left no ingest_stats
                # point at all: the one flake of tests/ingest/test_faults.py); written after the last batch
                self.write_stats()
                self._to_write.put(None)
                return
            if self.config.integrity.partition.drain and self._drained(now, batch):
                log.info("retired session of %s drained: %s", self.config.client_id, self.stats.summary())
                self.drained.set()
                self._stop.set()
                continue
            if self._reload_requested.is_set() or (
                    self.config.registry_poll_s > 0 and now - last_poll >= self.config.registry_poll_s
                    and self.registry.changed_on_disk()):
                self._reload_requested.clear()
                if self.registry.reload():
                    self._resubscribe()
            if now - last_poll >= self.config.registry_poll_s:
                last_poll = now
            if now - last_stats >= self.config.health.stats_interval_s:
                last_stats = now
                self.write_stats()

    def _drained(self, now: float, batch: list[Inbound]) -> bool:
        """Draining: DRAIN_IDLE_S with nothing received, judged, held or un-acked after unsubscribing all."""
        busy = (batch or self._held or self.stats.in_flight or self.budget.messages or not self.ready
                or len(self._inbox))
        if busy:
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= DRAIN_IDLE_S

    def _resubscribe(self) -> None:
        """After a registry reload: a partitioned instance takes new centres and drops removed ones."""
        centres = self.registry.centre_ids()
        self._session.drop_on_connect = not_mine_filters(self.config, centres)
        added, gone = self._session.resubscribe(subscriptions(self.config, centres))
        if gone or added:
            log.info("resubscribed after registry reload: +%s -%s", added, gone)
        if added:
            # a centre this instance now judges may have been another's until now: learn its recent
            # closes and ratings before judging it (the rebuild only adds to what we know)
            self.rebuild_index()

    def _drain(self) -> list[Inbound]:
        return self._inbox.drain()

    def _process(self, batch: list[Inbound], recheck_held: bool) -> None:
        started = time.monotonic()
        todo = batch
        if recheck_held:
            # after this batch's QMS events: a held rating may now find its ticket (a held message is
            # never a forbidden retained one, so _judge handles it exactly as the handler does)
            todo, self._held = batch + self._held, []
            self.handler.apply_lookups()  # InfluxDB's answers for held web ratings (lookup.py)
        done: list[Inbound] = []
        points: list[Point] = []
        # one pass, no per-message tuples: this loop runs for every message (issue 14)
        for m in todo:
            h = self._judge(m)
            if h is HELD:
                self._held.append(m)
            else:
                done.append(m)
                points += h.points
        self.stats.held = len(self._held)
        self._to_write.put((done, points, started, False))

    def _judge(self, m: Inbound) -> Handled:
        if m.retain and retain_forbidden(m.topic):
            return reject_retained(self.handler, m.topic, m.payload, m.received_ns)
        return self.handler.handle(m.topic, m.payload, m.received_ns)

    def _forget(self, msgs: list[Inbound]) -> None:
        """Give back the budget of messages that leave memory (acked, or left to the broker to redeliver)."""
        self.budget.release(len(msgs), sum(len(m.payload) for m in msgs))

    def _write_loop(self) -> None:
        while True:
            item = self._to_write.get()
            if item is None:
                return
            msgs, points, started, best_effort = item
            try:
                if best_effort:
                    self.batches.write_once(points)
                    continue
                if points and not self.batches.write(points, self._stop, self._beat):
                    continue  # stopping with InfluxDB down: leave un-acked, the broker redelivers
                self._ack(msgs)
                self.stats.record_batch(len(points), time.monotonic() - started)
            except Exception:  # a bug must not kill the writer: these messages stay un-acked
                log.exception("unexpected error writing a batch of %d points; not acked", len(points))
            finally:
                self._forget(msgs)  # acked, abandoned or left to the broker: no longer held here

    def _ack(self, msgs: list[Inbound]) -> None:
        with self._generation_lock:
            generation = self._generation
            mids: list[int] = []
            current = 0
            for m in msgs:
                if m.generation == generation:  # the others' mids belong to a dead connection: redelivered
                    current += 1
                    if m.qos > 0:
                        mids.append(m.mid)
            self.stats.abandoned += len(msgs) - current
            self._session.ack_many(mids)  # one write for the whole batch
            self.stats.acked += current

    def write_stats(self) -> None:
        """Write one ingest_stats point (best effort: a failure is logged, never retried)."""
        log.info("stats: %s", self.stats.summary())
        self._to_write.put(([], [self.stats.point(self.config.client_id, self._clock_ns())], 0.0, True))
