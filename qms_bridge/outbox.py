"""The bridge's durable outbox (SQLite, WAL, synchronous=FULL): a service outbox
(broker/mqtt/outbox.py: ``pending`` until the broker's PUBACK, ``seen`` so a replayed webhook,
a re-read row or a restart that re-reads the database never queues an event twice) with the
bridge's own tables in the same file, written in the same transaction as the events:

- ``watermark``: the SQL poller's high-water mark per source, written in the SAME
  transaction as the events read up to it: either both are durable or neither.
  ``hailong qms bridge mark show|set|reset`` reads and changes it.
- ``held``: database rows that could not be mapped (an officer code not yet in the map,
  a status not listed, ...), kept with the values read, in the same transaction that moves
  the mark past them: the poller retries them (at start, every ``sql.retry_held_s``, on
  ``hailong qms bridge held retry``), so a fixed map publishes them with no state edited.
- ``control``: requests from the ``hailong qms`` commands to a running bridge (retry now).

The file's tables are those the bridge always wrote (the two shared ones are the same DDL), so an
outbox written before the bridge shared broker/mqtt/outbox.py opens as it is
(tests/qms_bridge/test_outbox.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.mqtt.outbox import SCHEMA as BASE_SCHEMA
from broker.mqtt.outbox import Outbox as ServiceOutbox
from broker.mqtt.outbox import Queueable
from broker.mqtt.outbox import Queued as ServiceQueued

SCHEMA = BASE_SCHEMA + """
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
class Queued(ServiceQueued):
    """What one enqueue did: ids newly queued and ids already known (duplicates), and the held rows and mark."""

    newly_held: tuple[Held, ...] = ()  # rows held now that were not held (or held for another problem)
    mark_moved: bool = True  # False: the mark was changed by a command since it was read; left as set


class Outbox(ServiceOutbox):
    SCHEMA = SCHEMA

    def enqueue(self, events: Iterable[Queueable], watermark: tuple[str, Any] | None = None,
                read_from: Any = _UNSET, hold: Iterable[Held] = (), release: Iterable[tuple[str, str]] = (),
                retried: bool = False) -> Queued:
        """Queue events not seen before, move a source's watermark, hold the rows that could not be
        mapped and release those that now could, in one transaction.

        ``read_from`` is the mark the rows were read after: if a command changed the mark since, the
        new one is kept (the events are still queued, de-duplicated as ever). ``retried``: the held
        rows are retries, so their attempt count goes up."""
        now = int(time.time() * 1000)
        newly_held: list[Held] = []
        mark_moved = watermark is not None
        with self._transaction() as db:
            for source, row_id in release:
                db.execute("DELETE FROM held WHERE source = ? AND row_id = ?", (source, row_id))
            for h in hold:
                old = db.execute("SELECT problem FROM held WHERE source = ? AND row_id = ?",
                                 (h.source, h.row_id)).fetchone()
                if old is None or old[0] != h.problem:
                    newly_held.append(h)
                db.execute(
                    "INSERT INTO held (source, row_id, row, reason, problem, first_ms, last_ms, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (source, row_id) DO UPDATE SET "
                    "row = excluded.row, reason = excluded.reason, problem = excluded.problem, "
                    "last_ms = excluded.last_ms, attempts = attempts + ?",
                    (h.source, h.row_id, json.dumps(h.row), h.reason, h.problem, now, now, int(retried)))
            new, dup = self._queue(db, events, now)
            if watermark is not None:
                source, value = watermark
                if read_from is not _UNSET:
                    row = db.execute("SELECT value FROM watermark WHERE source = ?", (source,)).fetchone()
                    mark_moved = (json.loads(row[0]) if row else None) == read_from
                if mark_moved:
                    db.execute("INSERT OR REPLACE INTO watermark (source, value) VALUES (?, ?)",
                               (source, json.dumps(value)))
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
