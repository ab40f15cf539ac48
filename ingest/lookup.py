"""Look a late web rating's ticket up in InfluxDB, off the judging thread.

A web link lives up to 7 days after its service day (broker/weblink.py), far longer than the
recent-ticket index remembers (``tickets_per_counter`` per counter, and after a restart only
``index_lookback_s`` of history; tickets.py). So a phone rating whose ticket instance is not in
the index is held (ratings.py, rule 9) while this module asks InfluxDB, bounded by the link's
service day, for

- the ticket's closes (``ticket`` and ``ticket_reclose`` points of that number, that centre,
  the service day +- one day), and
- the ratings already stored for that number since the day before (``rating`` points bound to
  one of those closes: ``closed_at_ms``), so a ticket rated at the counter five days ago is
  still ``duplicate_ticket`` for the phone (first wins across channels).

The worker thread only ever does dictionary work here (:meth:`CloseLookup.ask`,
:meth:`CloseLookup.apply`): the queries run on this module's own thread, so a slow or absent
InfluxDB never stops the consumer. Answers are fed into the index's archive on the worker thread
(the index has no locks) before held ratings are judged again. An answer is trusted for
``ANSWER_TTL_S``; a rating still held after that asks again (a close written late by a lagging QMS
bridge is then found). While InfluxDB cannot answer, the question stays open and the rating stays
held (un-acked: the broker keeps it), retried after a randomised, capped delay.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from broker.mqtt.backoff import Backoff
from storage.influxql import InfluxQL, InfluxQueryError, string_literal
from storage.schema import WALKUP_FALSE, Field, Measurement, Tag

from .registry import zone
from .tickets import TicketIndex

log = logging.getLogger("hailong.ingest")

ANSWER_TTL_S = 60.0  # an answer stands this long; a rating held beyond it asks again
MAX_ANSWERED = 10_000  # remembered answers (pruned by age beyond this)
DAY_MS = 86_400_000


class LookupKey(NamedTuple):
    """The ticket instance a web link names: its number on its service day, or the vendor's ticket id."""

    centre: str
    number: str
    day: str  # the link's service day, YYYY-MM-DD in the centre's zone
    ticket_id: str | None


class _Question(NamedTuple):
    key: LookupKey
    since_ms: int
    until_ms: int


class _Answer(NamedTuple):
    key: LookupKey
    closes: list[dict[str, Any]]
    ratings: list[dict[str, Any]]


class CloseLookup:
    def __init__(self, db: InfluxQL, retry_initial_s: float = 0.2, retry_max_s: float = 5.0) -> None:
        self.db = db
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._questions: queue.Queue[_Question | None] = queue.Queue()
        self._answers: queue.Queue[_Answer] = queue.Queue()
        self._pending: dict[LookupKey, float] = {}  # worker thread only
        self._answered: dict[LookupKey, float] = {}  # worker thread only: key -> monotonic time answered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queries = 0  # answered questions (for tests and the log)
        self.failures = 0

    # ------------------------------------------------------------------ the worker thread's side

    def ask(self, key: LookupKey, timezone: str) -> bool:
        """True once InfluxDB's answer for ``key`` is in the index (within ``ANSWER_TTL_S``); else ask, False."""
        now = time.monotonic()
        answered = self._answered.get(key)
        if answered is not None and now - answered < ANSWER_TTL_S:
            return True
        if key not in self._pending:
            self._pending[key] = now
            start = datetime.combine(date.fromisoformat(key.day), datetime.min.time(), zone(timezone))
            since = int(start.timestamp() * 1000) - DAY_MS
            until = int((start + timedelta(days=2)).timestamp() * 1000)  # the day after it ends
            self._questions.put(_Question(key, since, until))
        return False

    def apply(self, index: TicketIndex) -> int:
        """Feed the answers that came in into the index (its archive); return how many."""
        n = 0
        while True:
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                break
            key = answer.key
            for row in answer.closes:  # oldest first: a first close before its re-closes
                index.closed(key.centre, str(row[Tag.COUNTER]), key.number, str(row.get(Tag.OFFICER) or ""),
                             str(row.get(Tag.SERVICE) or ""), int(row["time"]) // 1_000_000,
                             str(row[Field.TICKET_ID]) if row.get(Field.TICKET_ID) else None, archive=True)
            for row in answer.ratings:  # oldest first: the first rating of an instance is the one that counts
                index.mark_rated(key.centre, str(row[Tag.COUNTER]), key.number,
                                 str(row[Field.TICKET_ID]) if row.get(Field.TICKET_ID) else None,
                                 int(row[Field.CLOSED_AT_MS]), str(row[Field.EVENT_ID]))
            self._pending.pop(key, None)
            self._answered[key] = time.monotonic()
            n += 1
        if len(self._answered) > MAX_ANSWERED:
            cutoff = time.monotonic() - ANSWER_TTL_S
            self._answered = {k: at for k, at in self._answered.items() if at >= cutoff}
        return n

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ the lookup thread

    def start(self) -> CloseLookup:
        self._thread = threading.Thread(target=self._run, name="ingest-lookup", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._questions.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            question = self._questions.get()
            if question is None:
                return
            # randomised and capped (the fleet's one schedule): every worker of a province asks the same InfluxDB
            backoff = Backoff(min(self.retry_initial_s, self.retry_max_s), self.retry_max_s, spread_s=0.0)
            while not self._stop.is_set():
                try:
                    answer = self._query(question)
                    self.queries += 1  # before the answer is visible: whoever sees it sees it counted
                    self._answers.put(answer)
                    break
                except InfluxQueryError as exc:
                    self.failures += 1
                    wait = backoff.after_failure()
                    log.warning("cannot look ticket %r of %s up in InfluxDB yet (retry in %.1fs): %s",
                                question.key.number, question.key.day, wait, exc)
                    self._stop.wait(wait)

    def _query(self, q: _Question) -> _Answer:
        started = time.monotonic()
        key = q.key
        where = f'"{Tag.CENTRE}" = {string_literal(key.centre)} AND "{Field.TICKET}" = {string_literal(key.number)}'
        closes = self.db.rows(
            f'SELECT "{Field.TICKET}", "{Field.TICKET_ID}", "{Tag.OFFICER}", "{Tag.SERVICE}", "{Tag.COUNTER}" '
            f'FROM "{Measurement.TICKET}", "{Measurement.TICKET_RECLOSE}" WHERE {where} '
            f'AND time >= {q.since_ms}ms AND time < {q.until_ms}ms', epoch="ns")
        closes = sorted((r for r in closes if r.get(Tag.COUNTER)), key=lambda r: int(r["time"]))
        ratings = self.db.rows(
            f'SELECT "{Field.EVENT_ID}", "{Field.TICKET_ID}", "{Field.CLOSED_AT_MS}", "{Tag.COUNTER}" '
            f'FROM "{Measurement.RATING}" WHERE {where} AND "{Tag.WALKUP}" = {string_literal(WALKUP_FALSE)} '
            f'AND time >= {q.since_ms}ms', epoch="ns")
        ratings = sorted((r for r in ratings if r.get(Field.CLOSED_AT_MS) is not None and r.get(Tag.COUNTER)
                          and r.get(Field.EVENT_ID)), key=lambda r: int(r["time"]))
        log.info("looked ticket %r of %s (centre %s) up in InfluxDB for a web rating: %d closes, %d ratings "
                 "(%.0f ms)", key.number, key.day, key.centre, len(closes), len(ratings),
                 (time.monotonic() - started) * 1000)
        return _Answer(key, closes, ratings)
