"""The bridge's durable outbox (SQLite, WAL, synchronous=FULL).

Three tables, one file:

- ``pending``: events waiting for the broker's PUBACK, in arrival order. A row is
  deleted only when its PUBACK came, so a crash, a broker outage or a SIGKILL
  loses nothing: the next start publishes what is left.
- ``seen``: every event id ever queued (kept ``seen_days``), so a replayed webhook,
  a re-read row or a restart that re-reads the database never queues an event twice.
- ``watermark``: the SQL poller's high-water mark per source, written in the SAME
  transaction as the events read up to it: either both are durable or neither.

Used from several threads (HTTP handlers, the poller, paho's callback thread): one
connection behind a lock; every write is one short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mapping import Mapped

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
CREATE TABLE IF NOT EXISTS watermark (
    source TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
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
    def __init__(self, path: Path, seen_days: int = 14) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.seen_ms = seen_days * 86_400_000
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed event survives power loss; the vendor got its 2xx for it
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._last_prune = 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def enqueue(self, events: Iterable[Mapped], watermark: tuple[str, Any] | None = None) -> Queued:
        """Queue events not seen before (and move a source's watermark) in one transaction."""
        now = int(time.time() * 1000)
        new: list[str] = []
        dup: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for m in events:
                    cur = self._db.execute("INSERT OR IGNORE INTO seen (event_id, queued_ms) VALUES (?, ?)",
                                           (m.event_id, now))
                    if cur.rowcount == 0:
                        dup.append(m.event_id)
                        continue
                    self._db.execute(
                        "INSERT INTO pending (event_id, topic, counter, payload, queued_ms) VALUES (?, ?, ?, ?, ?)",
                        (m.event_id, m.topic, m.event.counter, m.event.to_json(), now))
                    new.append(m.event_id)
                if watermark is not None:
                    source, value = watermark
                    self._db.execute("INSERT OR REPLACE INTO watermark (source, value) VALUES (?, ?)",
                                     (source, json.dumps(value)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._maybe_prune(now)
        return Queued(tuple(new), tuple(dup))

    def watermark(self, source: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM watermark WHERE source = ?", (source,)).fetchone()
        return json.loads(row[0]) if row else None

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, topic, counter, payload FROM pending WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit)).fetchall()
        return [Pending(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bytes(r[4])) for r in rows]

    def acked(self, event_id: str) -> None:
        """The broker has it (PUBACK): the event leaves the outbox; its id stays in ``seen``."""
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE event_id = ?", (event_id,))

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
