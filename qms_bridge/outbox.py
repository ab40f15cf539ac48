"""The bridge's durable outbox (SQLite, WAL, synchronous=FULL).

Five tables, one file:

- ``pending``: events waiting for the broker's PUBACK, in arrival order. A row is
  deleted only when its PUBACK came, so a crash, a broker outage or a SIGKILL
  loses nothing: the next start publishes what is left.
- ``seen``: every event id ever queued (kept ``seen_days``), so a replayed webhook,
  a re-read row or a restart that re-reads the database never queues an event twice.
- ``watermark``: the SQL poller's high-water mark per source, written in the SAME
  transaction as the events read up to it: either both are durable or neither.
  ``hailong qms bridge mark show|set|reset`` reads and changes it.
- ``held``: database rows that could not be mapped (an officer code not yet in the map,
  a status not listed, ...), kept with the values read, in the same transaction that moves
  the mark past them: the poller retries them (at start, every ``sql.retry_held_s``, on
  ``hailong qms bridge held retry``), so a fixed map publishes them with no state edited.
- ``control``: requests from the ``hailong qms`` commands to a running bridge (retry now).

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
CREATE TABLE IF NOT EXISTS held (
    source TEXT NOT NULL,
    row_id TEXT NOT NULL,
    row TEXT NOT NULL,
    reason TEXT NOT NULL,
    problem TEXT NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (source, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS control (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_UNSET = object()
RETRY_REQUEST = "retry_held"  # control: a command or SIGHUP asks the SQL poller to retry the held rows now


@dataclass(frozen=True)
class Held:
    """A row the mapping could not use yet: its values as read (JSON-safe) and why."""

    source: str
    row_id: str
    row: dict[str, Any]
    reason: str
    problem: str
    first_ms: int = 0
    last_ms: int = 0
    attempts: int = 1


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
    newly_held: tuple[Held, ...] = ()  # rows held now that were not held (or held for another problem)
    mark_moved: bool = True  # False: the mark was changed by a command since it was read; left as set


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

    def enqueue(self, events: Iterable[Mapped], watermark: tuple[str, Any] | None = None,
                read_from: Any = _UNSET, hold: Iterable[Held] = (), release: Iterable[tuple[str, str]] = (),
                retried: bool = False) -> Queued:
        """Queue events not seen before, move a source's watermark, hold the rows that could not be
        mapped and release those that now could, in one transaction.

        ``read_from`` is the mark the rows were read after: if a command changed the mark since, the
        new one is kept (the events are still queued, de-duplicated as ever). ``retried``: the held
        rows are retries, so their attempt count goes up."""
        now = int(time.time() * 1000)
        new: list[str] = []
        dup: list[str] = []
        newly_held: list[Held] = []
        mark_moved = watermark is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for source, row_id in release:
                    self._db.execute("DELETE FROM held WHERE source = ? AND row_id = ?", (source, row_id))
                for h in hold:
                    old = self._db.execute("SELECT problem FROM held WHERE source = ? AND row_id = ?",
                                           (h.source, h.row_id)).fetchone()
                    if old is None or old[0] != h.problem:
                        newly_held.append(h)
                    self._db.execute(
                        "INSERT INTO held (source, row_id, row, reason, problem, first_ms, last_ms, attempts) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (source, row_id) DO UPDATE SET "
                        "row = excluded.row, reason = excluded.reason, problem = excluded.problem, "
                        "last_ms = excluded.last_ms, attempts = attempts + ?",
                        (h.source, h.row_id, json.dumps(h.row), h.reason, h.problem, now, now, int(retried)))
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
                    if read_from is not _UNSET:
                        row = self._db.execute("SELECT value FROM watermark WHERE source = ?", (source,)).fetchone()
                        mark_moved = (json.loads(row[0]) if row else None) == read_from
                    if mark_moved:
                        self._db.execute("INSERT OR REPLACE INTO watermark (source, value) VALUES (?, ?)",
                                         (source, json.dumps(value)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._maybe_prune(now)
        return Queued(tuple(new), tuple(dup), tuple(newly_held), mark_moved)

    def watermark(self, source: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM watermark WHERE source = ?", (source,)).fetchone()
        return json.loads(row[0]) if row else None

    def watermarks(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT source, value FROM watermark ORDER BY source").fetchall()
        return {str(r[0]): json.loads(r[1]) for r in rows}

    def set_watermark(self, source: str, value: Any) -> None:
        """``hailong qms bridge mark set|reset``: None forgets the mark (the source is read from its start;
        what was published before is recognised by its event id and not published again)."""
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM watermark WHERE source = ?", (source,))
            else:
                self._db.execute("INSERT OR REPLACE INTO watermark (source, value) VALUES (?, ?)",
                                 (source, json.dumps(value)))

    def held(self, source: str | None = None) -> list[Held]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source, row_id, row, reason, problem, first_ms, last_ms, attempts FROM held "
                "WHERE ? IS NULL OR source = ? ORDER BY source, first_ms, row_id", (source, source)).fetchall()
        return [Held(str(r[0]), str(r[1]), json.loads(r[2]), str(r[3]), str(r[4]), int(r[5]), int(r[6]), int(r[7]))
                for r in rows]

    def drop_held(self, source: str | None = None) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM held WHERE ? IS NULL OR source = ?", (source, source)).rowcount

    def request(self, name: str) -> None:
        """A command asks the running bridge for something (it looks at every poll)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO control (name, value) VALUES (?, ?)",
                             (name, str(int(time.time() * 1000))))

    def take_request(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM control WHERE name = ?", (name,)).rowcount > 0

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
