"""A service's durable outbox (SQLite, WAL, synchronous=FULL): the web rating service's, and the base of
the QMS bridge's (qms_bridge/outbox.py adds its vendor-specific tables: watermarks, held rows); the
terminal has its own, device/outbox.py, tuned for a Pi's SD card.

Every producer commits to its own outbox before it answers (the vendor's 2xx, the citizen's
"Cảm ơn"), and an item leaves it only on the broker's PUBACK (broker/mqtt/outbox_publisher.py).

Two tables, one file:

- ``pending``: events waiting for the broker's PUBACK, in arrival order. A row is
  deleted only when its PUBACK came, so a crash, a broker outage or a SIGKILL
  loses nothing: the next start publishes what is left.
- ``seen``: every event id ever queued (kept ``seen_days``), so a replayed webhook,
  a re-read row, a restart that re-reads the database or a citizen's second submit of the
  same link never queues an event twice.

Used from several threads (HTTP handlers, the poller, paho's callback thread): one
connection behind a lock; every write is one short transaction.

What waits for the disk, and what does not (bench/web_submit.py: a POST's p99 was 200-300 ms
while p50 was 2-3 ms, every stall one fsync of ours held under the lock while the machine's
disk was busy, e.g. InfluxDB flushing):

- a commit that queues events fsyncs the WAL (synchronous=FULL): the promise to the citizen
  or the vendor is made after it;
- an ack (PUBACK -> delete) does NOT fsync: it is committed with synchronous=NORMAL, made
  durable by the next queueing commit's fsync of the same WAL. A power cut can undo an ack;
  the event is then published again, and a resend of the same event id and content is one
  rating (the ingest rewrites the identical point). Before, every PUBACK held the lock for its
  own fsync, and a queueing commit waited behind a convoy of them;
- WAL checkpoints run on a connection and thread of their own (PASSIVE: never blocking a
  writer), every ``CHECKPOINT_EVERY_S``, instead of inside whichever commit crossed the
  1,000-page mark (the checkpoint's own fsyncs of the database file then stalled that commit).

What is queued is anything with an ``event_id``, a ``topic`` and an ``event`` that has a
``counter`` and serialises itself (``to_json``): a contract message on its topic.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHECKPOINT_EVERY_S = 1.0


class _Message(Protocol):
    @property
    def counter(self) -> str: ...

    def to_json(self) -> bytes: ...


class Queueable(Protocol):
    """One event for the outbox: a contract message, its topic and its (stable) event id."""

    @property
    def event_id(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def event(self) -> _Message: ...

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    counter TEXT NOT NULL,
    payload BLOB NOT NULL,
    queued_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    event_id TEXT PRIMARY KEY,
    queued_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (queued_ms);
"""


@dataclass(frozen=True)
class Pending:
    seq: int
    event_id: str
    topic: str
    counter: str
    payload: bytes


@dataclass(frozen=True)
class Queued:
    """What one enqueue did: ids newly queued and ids already known (duplicates)."""

    new: tuple[str, ...]
    duplicates: tuple[str, ...]


class Outbox:
    """The two tables every service outbox has. A service with tables of its own (the QMS bridge's
    watermarks and held rows) extends ``SCHEMA`` and writes them in the same transaction as its
    events: :meth:`_transaction` and :meth:`_queue` are for that."""

    SCHEMA = SCHEMA

    def __init__(self, path: Path, seen_days: int = 14) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.seen_ms = seen_days * 86_400_000
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed event survives power loss; the vendor got its 2xx for it
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(self.SCHEMA)
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it, off the commit path
        self._last_prune = 0.0
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="outbox-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        self._closing.set()
        self._checkpointer.join(10)
        with self._lock:
            self._db.close()

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file while writers go on (PASSIVE), on our own connection."""
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA synchronous=FULL")
            while not self._closing.wait(CHECKPOINT_EVERY_S):
                # busy or closing: the next round does it (the WAL only grows meanwhile)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed whole, or rolled back whole."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @staticmethod
    def _queue(db: sqlite3.Connection, events: Iterable[Queueable], now_ms: int) -> tuple[list[str], list[str]]:
        """Inside a transaction: queue the events not seen before; (new ids, duplicate ids)."""
        new: list[str] = []
        dup: list[str] = []
        for m in events:
            cur = db.execute("INSERT OR IGNORE INTO seen (event_id, queued_ms) VALUES (?, ?)", (m.event_id, now_ms))
            if cur.rowcount == 0:
                dup.append(m.event_id)
                continue
            db.execute("INSERT INTO pending (event_id, topic, counter, payload, queued_ms) VALUES (?, ?, ?, ?, ?)",
                       (m.event_id, m.topic, m.event.counter, m.event.to_json(), now_ms))
            new.append(m.event_id)
        return new, dup

    def enqueue(self, events: Iterable[Queueable]) -> Queued:
        """Queue events not seen before, in one transaction."""
        now = int(time.time() * 1000)
        with self._transaction() as db:
            new, dup = self._queue(db, events, now)
        self._maybe_prune(now)
        return Queued(tuple(new), tuple(dup))

    def seen(self, event_id: str) -> bool:
        """Was this event ever queued (kept ``seen_days``)?"""
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone() is not None

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, topic, counter, payload FROM pending WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit)).fetchall()
        return [Pending(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4])) for r in rows]

    def acked(self, event_id: str) -> None:
        """The broker has it (PUBACK): the event leaves the outbox; its id stays in ``seen``.

        Committed without its own fsync (module docstring): losing it to a power cut only publishes the
        event again, which the ingest stores once."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("DELETE FROM pending WHERE event_id = ?", (event_id,))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def _maybe_prune(self, now_ms: int) -> None:
        # hourly is plenty: seen only has to outlive any replay the vendor may do
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        with self._lock:
            self._db.execute("DELETE FROM seen WHERE queued_ms < ? AND event_id NOT IN "
                             "(SELECT event_id FROM pending)", (now_ms - self.seen_ms,))
