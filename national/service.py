"""``hailong national consume``: the provinces' aggregates from the national broker into InfluxDB.

Built like the ingest, smaller: the lean MQTT consumer (broker/mqtt/consumer.py) on a direct
subscription in a persistent session (``national/+/+/+``, QoS 1; a ``$share`` subscription is
not restored by Mosquitto 2.0.11 after a restart), a writer loop that judges a batch, writes
it, and only then acknowledges it -- on the connection that delivered it; anything not
acknowledged comes again and is judged again (a duplicate then).

Each aggregate is judged (broker/federation.py, national/store.py):
- the topic is ``national/<province>/<centre>/<day>``, the payload a valid CentreDay naming the
  same province, centre and day, with the digest of its counts;
- the centre belongs to that province (centres.json): the national ACL already confines a
  bridge to its own prefix, this also catches a province reporting a centre it does not own;
- revision: higher than the stored one replaces it, equal with the same digest is a
  duplicate (acked, nothing written), equal with other counts is refused
  (``revision_conflict``), lower is ignored (a late copy of something superseded).
Refusals are stored as ``agg_rejected`` points with their reason, and acknowledged: sending
the same bytes again cannot change the verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from broker.contract import ContractError
from broker.federation import (
    NATIONAL_FILTER,
    CentreDay,
    check_centre_day,
    load_centres,
    parse_centre_day,
    parse_national_topic,
    revision_verdict,
)
from broker.kernel.health import HealthServer
from broker.kernel.systemd import Watchdog
from broker.mqtt.consumer import MqttConsumer
from storage.influxql import InfluxQueryError
from storage.lineproto import Point
from storage.schema import Field, Measurement, Tag
from storage.writer import WriteError, Writer, make_writer, write_bisecting, write_retrying

from .config import NationalConfig
from .store import Key, RevisionIndex, centre_day_point, received_points, rejected_point, roster_points

log = logging.getLogger("hailong.national")


@dataclass(slots=True)
class Inbound:
    generation: int
    topic: str
    payload: bytes
    mid: int


@dataclass
class Stats:
    stored: int = 0
    duplicates: int = 0
    older: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    write_failures: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "older": self.older,
                "refused": dict(self.refused), "write_failures": self.write_failures}


class Judge:
    """The verdict on one batch: points to write, index updates to make after the write."""

    def __init__(self, centres: dict[str, str], index: RevisionIndex, tz: str, stats: Stats) -> None:
        self.centres, self.index, self.tz, self.stats = centres, index, tz, stats
        self._clock_ns = 0

    def batch(self, messages: list[Inbound]) -> tuple[list[Point], dict[Key, CentreDay]]:
        stored: dict[Key, CentreDay] = {}
        rejected: list[Point] = []
        received: Counter[str] = Counter()
        for m in messages:
            try:
                msg = self._check(m)
            except ContractError as exc:
                province = m.topic.split("/")[1] if m.topic.count("/") == 3 else ""
                self.stats.refused[exc.reason] += 1
                log.warning("refused %s: %s", m.topic, exc)
                rejected.append(rejected_point(exc.reason, province, m.topic, m.payload, exc.message,
                                               self.unique_ns()))
                continue
            received[msg.province] += 1
            key = (msg.province, msg.centre, msg.day)
            pending = stored.get(key)
            held = (pending.revision, pending.digest) if pending is not None else self.index.get(key)
            verdict = revision_verdict(held, msg)
            if verdict == "store":
                stored[key] = msg
            elif verdict == "duplicate":
                self.stats.duplicates += 1
            elif verdict == "older":
                self.stats.older += 1
            else:
                self.stats.refused["revision_conflict"] += 1
                detail = f"revision {msg.revision} is stored with digest {held[1] if held else '?'}, not {msg.digest}"
                log.warning("refused %s: %s", m.topic, detail)
                rejected.append(rejected_point("revision_conflict", msg.province, m.topic, m.payload, detail,
                                               self.unique_ns()))
        points = [centre_day_point(msg, self.tz) for msg in stored.values()]
        return points + rejected + received_points(dict(received), self.unique_ns()), stored

    def _check(self, m: Inbound) -> CentreDay:
        topic = parse_national_topic(m.topic)
        msg = parse_centre_day(m.payload)
        check_centre_day(topic, msg)
        owner = self.centres.get(msg.centre)
        if owner is None:
            raise ContractError("unknown_centre", f"centre {msg.centre!r} is not in the national centre list",
                                "centre")
        if owner != msg.province:
            raise ContractError("wrong_province", f"centre {msg.centre!r} belongs to {owner!r}, not "
                                f"{msg.province!r}", "province")
        return msg

    def unique_ns(self) -> int:
        # rejected points: arrival time, never two on one timestamp (they would overwrite each other)
        self._clock_ns = max(time.time_ns(), self._clock_ns + 1)
        return self._clock_ns


class NationalService:
    """:meth:`start`, then :meth:`run` until :meth:`stop` (or SIGTERM via :meth:`run_forever`)."""

    def __init__(self, cfg: NationalConfig, writer: Writer | None = None) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.db = cfg.influx.query_client()
        self.index = RevisionIndex(self.db, cfg.timezone, cfg.lookback_days)
        self.writer = writer or make_writer(cfg.influx)
        self._centres_mtime = 0.0
        self.judge = Judge(self._load_centres(), self.index, cfg.timezone, self.stats)
        self._inbox: queue.Queue[Inbound] = queue.Queue()
        self._generation = 0
        self._stop = threading.Event()
        self._last_turn = time.monotonic()
        self.last_write_ok: bool | None = None
        self.watchdog = Watchdog()
        self.health: HealthServer | None = None
        self.consumer = MqttConsumer(
            cfg.mqtt, cfg.client_id, subscriptions=[(NATIONAL_FILTER, 1)], on_message=self._on_message,
            session_expiry_s=cfg.session_expiry_s, receive_maximum=cfg.batch.receive_maximum,
            on_connect=self._on_connect)

    # ------------------------------------------------------------------ consumer thread

    def _on_connect(self) -> None:
        self._generation += 1  # acks of an earlier connection's messages would be for the wrong packet ids

    def _on_message(self, topic: str, payload: bytes, mid: int, _qos: int, _retain: bool) -> None:
        self._inbox.put(Inbound(self._generation, topic, payload, mid))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NationalService:
        delay = 1.0
        while True:  # InfluxDB may come up after us (boot): wait for it, a randomised capped delay apart
            try:
                self.index.load()
                break
            except InfluxQueryError as exc:
                log.warning("cannot load the stored revisions yet, retry in %.1f s: %s", delay, exc)
                if self._stop.wait(delay * random.uniform(0.5, 1.0)):
                    break
                delay = min(delay * 2, 30.0)
        if self.cfg.health.http_port is not None:
            self.health = HealthServer(self.cfg.health.http_port, self.snapshot, name="national").start()
        self.consumer.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.consumer.stop()
        if self.health is not None:
            self.health.stop()
        self.writer.close()

    def run_forever(self) -> None:
        def on_term(_sig: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        try:
            self.run()
        finally:
            self.close()

    def snapshot(self) -> dict[str, Any]:
        fresh = time.monotonic() - self._last_turn < self.cfg.health.stale_after_s
        return {"alive": fresh and not self._stop.is_set(), "broker_connected": self.consumer.connected.is_set(),
                "influx_ok": self.last_write_ok, "centre_days_known": len(self.index), **self.stats.snapshot()}

    # ------------------------------------------------------------------ writer loop

    def run(self) -> None:
        stats_due = time.monotonic() + self.cfg.health.stats_interval_s
        centres_due = time.monotonic() + self.cfg.centres_poll_s
        batch_cfg = self.cfg.batch
        self._write_roster()
        while not self._stop.is_set():
            self._beat()
            batch = self._collect(batch_cfg.size, batch_cfg.max_delay_ms / 1000)
            if batch:
                self._handle(batch)
            if time.monotonic() >= stats_due:
                stats_due = time.monotonic() + self.cfg.health.stats_interval_s
                self._write_stats()
            if self.cfg.centres_poll_s and time.monotonic() >= centres_due:
                centres_due = time.monotonic() + self.cfg.centres_poll_s
                self._reload_centres()
        self._write_stats()

    def _beat(self) -> None:
        self._last_turn = time.monotonic()
        self.watchdog.beat()

    def _collect(self, size: int, delay_s: float) -> list[Inbound]:
        try:
            first = self._inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + delay_s
        while len(batch) < size:
            left = deadline - time.monotonic()
            try:
                batch.append(self._inbox.get_nowait() if left <= 0 else self._inbox.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[Inbound]) -> None:
        points, stored = self.judge.batch(batch)
        if points and not self._write(points):
            return  # stopping while InfluxDB fails: not acked, the broker hands them to us again
        for key, msg in stored.items():
            self.index.put(key, msg.revision, msg.digest)
        self.stats.stored += len(stored)
        current = self._generation
        self.consumer.ack_many([m.mid for m in batch if m.generation == current and m.mid])

    def _write(self, points: list[Point]) -> bool:
        lines = [p.to_line() for p in points]

        def failed(exc: WriteError, delay: float) -> None:
            self.last_write_ok = False
            self.stats.write_failures += 1
            log.warning("InfluxDB write of %d points failed, retry in %.1f s: %s", len(lines), delay, exc)
            self._beat()

        ok = write_retrying(lambda: write_bisecting(self.writer, lines, points, self._refused), self._stop,
                            self.cfg.batch.retry_initial_ms / 1000, self.cfg.batch.retry_max_ms / 1000, failed)
        if ok:
            self.last_write_ok = True
        return ok

    def _refused(self, p: Point, line: str, exc: WriteError) -> Point:
        """A point InfluxDB refuses for good (e.g. a field type conflict): stored refused, with its line."""
        self.stats.refused["write_rejected"] += 1
        log.error("InfluxDB refused a point for good: %s", exc)
        return rejected_point("write_rejected", str(p.tags.get(Tag.PROVINCE, "")), p.measurement, line.encode(),
                              str(exc), self.judge.unique_ns())

    def _write_roster(self) -> None:
        today = dt.datetime.now(ZoneInfo(self.cfg.timezone)).date().isoformat()
        try:
            self.writer.write([p.to_line() for p in roster_points(self.judge.centres, today, self.cfg.timezone)])
        except WriteError as exc:
            log.warning("could not write agg_roster: %s", exc)

    def _write_stats(self) -> None:
        self._write_roster()
        s = self.stats
        point = Point(Measurement.NATIONAL_STATS, {Tag.INSTANCE: self.cfg.client_id},
                      {Field.STORED: s.stored, Field.DUPLICATES: s.duplicates, Field.OLDER: s.older,
                       Field.REFUSED: sum(s.refused.values())}, time.time_ns())
        try:
            self.writer.write([point.to_line()])
        except WriteError as exc:
            log.warning("could not write national_stats: %s", exc)
        log.info("national consumer: %s", s.snapshot())

    def _load_centres(self) -> dict[str, str]:
        self._centres_mtime = self.cfg.centres.stat().st_mtime if self.cfg.centres.exists() else 0.0
        return load_centres(self.cfg.centres)

    def _reload_centres(self) -> None:
        try:
            if self.cfg.centres.stat().st_mtime != self._centres_mtime:
                self.judge.centres = self._load_centres()
                log.info("centres.json reloaded: %d centres", len(self.judge.centres))
        except Exception as exc:  # a half-written file: keep the list we have, say so
            log.error("centres.json not reloaded, the previous list stays: %s", exc)
