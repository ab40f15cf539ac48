"""The durable outbox: every rating is in SQLite before the citizen is thanked.

- WAL journal with ``synchronous=FULL``: a committed rating survives kill -9 and
  power loss (the WAL is fsynced at every commit).
- ``seq`` is allocated in the same transaction as the insert and persisted in
  ``meta``, so it stays device-monotonic across restarts and is the drain order.
- A rating leaves the outbox only when the broker acknowledged it (PUBACK), via
  :meth:`Outbox.delete` (not fsynced: a lost delete means a harmless re-send).
  A rating the broker refuses (MQTT 5 reason code) is moved to ``parked`` with
  the reason, never silently dropped.
- Bounded: at ``max_ratings`` unsent ratings :meth:`commit` raises
  :class:`StorageFull` and the terminal goes out of service until the broker is
  reachable again. Queued ratings are never evicted: an officer's score must not
  depend on which ratings happened to be dropped. ``nearly_full`` turns on at
  the high-water mark and is published in the device status.

Thread-safe: the UI thread commits, the link's drain thread reads and deletes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from broker.contract import RatingEvent, new_event_id

from .state import RatingDraft, StorageFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    payload  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    seq       INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL,
    payload   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    parked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 0);
"""


def read_boot_id() -> str:
    """The kernel's id of this boot; ``mono_ms`` (CLOCK_MONOTONIC) counts from the same boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "unknown"
    except OSError:
        return f"boot-{time.time_ns()}"


class Outbox:
    def __init__(self, path: Path, *, device: str, centre: str, counter: str, max_ratings: int = 50_000,
                 high_water: float = 0.8, boot_id: str | None = None) -> None:
        self.path = Path(path)
        self.device, self.centre, self.counter = device, centre, counter
        self.max_ratings = max_ratings
        self.high_water = high_water
        self.boot_id = boot_id or read_boot_id()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so the seq update and the insert are one unit
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # Deletes after PUBACK go through a second connection with synchronous=NORMAL: losing one
        # (power cut before the next checkpoint) only re-sends that rating with the same event_id,
        # which the ingest dedupes. Not fsyncing each ack keeps the disk free for the commits
        # a citizen is waiting on, and lets the MQTT thread keep up with PUBACKs.
        self._acks = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        self._acks.execute("PRAGMA synchronous=NORMAL")
        self._depth = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # ------------------------------------------------------------------ the UI side

    def commit(self, draft: RatingDraft) -> RatingEvent:
        """Store one rating durably and return it as it will be published (sent_at set at publish time)."""
        with self._lock:
            if self._depth >= self.max_ratings:
                raise StorageFull(f"outbox {self.path} holds {self._depth} of {self.max_ratings} unsent ratings")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
                event = RatingEvent(
                    v=1, event_id=new_event_id(), seq=seq, device=self.device, centre=self.centre,
                    counter=self.counter, officer=draft.officer, ticket=draft.ticket, service=draft.service,
                    dossier=draft.dossier, scale=draft.scale, score=draft.score, reasons=draft.reasons,
                    input=draft.input, closed_at=draft.closed_at, rated_at=draft.rated_at,
                    sent_at=draft.rated_at, boot_id=self.boot_id, mono_ms=draft.mono_ms,
                    ticket_id=draft.ticket_id,
                )
                self._db.execute("INSERT INTO outbox (seq, event_id, payload) VALUES (?, ?, ?)",
                                 (seq, event.event_id, event.to_json().decode("utf-8")))
                self._db.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq + 1,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1
            return event

    def has_room(self) -> bool:
        return self._depth < self.max_ratings

    # ------------------------------------------------------------------ the MQTT side

    def pending(self, after_seq: int = -1, limit: int = 100) -> list[tuple[int, RatingEvent]]:
        """Unsent ratings in seq order, starting after ``after_seq``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after_seq, limit)).fetchall()
        return [(int(seq), RatingEvent.model_validate_json(payload)) for seq, payload in rows]

    def delete(self, seq: int) -> None:
        """The broker acknowledged this rating (PUBACK): it may leave the outbox."""
        with self._lock:
            cur = self._acks.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            self._depth -= cur.rowcount

    def park(self, seq: int, reason: str) -> None:
        """The broker refused this rating: keep it aside with the reason for a technician."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO parked (seq, event_id, payload, reason, parked_at) "
                             "SELECT seq, event_id, payload, ?, ? FROM outbox WHERE seq=?",
                             (reason, time.time_ns() // 1_000_000, seq))
            cur = self._db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            self._db.execute("COMMIT")
            self._depth -= cur.rowcount

    # ------------------------------------------------------------------ status

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def nearly_full(self) -> bool:
        return self._depth >= self.max_ratings * self.high_water

    @property
    def next_seq(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])

    def parked_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM parked").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._acks.close()
            self._db.close()
