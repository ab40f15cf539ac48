"""The bridge's outbox on the shared service outbox (broker/mqtt/outbox.py): a file written by the
bridge before it shared that code opens as it is, and events, held rows and the mark still commit
together or not at all."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from broker.contract import QmsEvent, qms_topic
from qms_bridge.mapping import Mapped
from qms_bridge.outbox import Held, Outbox

# The DDL the bridge's own outbox created before it was built on broker.mqtt.outbox, frozen here:
# outbox files in the field were made with it.
LEGACY_SCHEMA = """
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

CENTRE, COUNTER = "qn-tthc", "q01"


def _closed(ticket: str) -> Mapped:
    event = QmsEvent(v=1, type="ticket_closed", counter=COUNTER, officer="cb-1", ticket=ticket,
                     event_id=str(uuid.uuid4()), at=1_765_000_000_000)
    return Mapped(event, qms_topic(CENTRE, COUNTER))


def _ddl(path: Path) -> dict[str, str]:
    db = sqlite3.connect(str(path))
    try:
        return {str(n): str(s) for n, s in db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")}
    finally:
        db.close()


def test_an_outbox_file_from_before_the_shared_base_opens_with_its_rows(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.sqlite3"
    old = _closed("A001")
    db = sqlite3.connect(str(legacy))
    db.executescript(LEGACY_SCHEMA)
    db.execute("INSERT INTO seen VALUES (?, 1)", (old.event_id,))
    db.execute("INSERT INTO pending (event_id, topic, counter, payload, queued_ms) VALUES (?, ?, ?, ?, 1)",
               (old.event_id, old.topic, COUNTER, old.event.to_json()))
    db.execute("INSERT INTO watermark VALUES ('tickets', '[\"2026-12-07\", 41]')")
    db.execute("INSERT INTO held VALUES ('tickets', '17', '{\"officer\": \"x9\"}', 'unknown_officer', "
               "'officer x9 not in the map', 1, 2, 3)")
    db.commit()
    db.close()
    fresh = tmp_path / "fresh.sqlite3"
    Outbox(fresh).close()
    assert _ddl(fresh) == _ddl(legacy)  # the same tables, columns and index: nothing to migrate

    box = Outbox(legacy)
    try:
        [p] = box.pending()
        assert (p.event_id, p.topic, p.counter, p.payload) == (old.event_id, old.topic, COUNTER, old.event.to_json())
        assert box.watermark("tickets") == ["2026-12-07", 41]
        [h] = box.held()
        assert (h.row_id, h.row, h.reason, h.attempts) == ("17", {"officer": "x9"}, "unknown_officer", 3)
        new = _closed("A002")
        q = box.enqueue([old, new], watermark=("tickets", ["2026-12-07", 42]), read_from=["2026-12-07", 41])
        assert (q.new, q.duplicates, q.mark_moved) == ((new.event_id,), (old.event_id,), True)
        assert [x.event_id for x in box.pending()] == [old.event_id, new.event_id]
        box.acked(old.event_id)
        assert box.depth() == 1 and box.seen(old.event_id)
    finally:
        box.close()


class _Unserialisable(QmsEvent):
    def to_json(self) -> bytes:
        raise RuntimeError("disk full while serialising")


def test_events_held_rows_and_mark_commit_together_or_not_at_all(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        good = _closed("A001")
        bad_event = _Unserialisable(**_closed("A002").event.model_dump())
        bad = Mapped(bad_event, good.topic)
        held = Held("tickets", "18", {"officer": "x9"}, "unknown_officer", "officer x9 not in the map")
        with pytest.raises(RuntimeError, match="disk full"):
            box.enqueue([good, bad], watermark=("tickets", 42), hold=[held])
        assert (box.depth(), box.seen(good.event_id), box.watermark("tickets"), box.held()) == (0, False, None, [])

        q = box.enqueue([good], watermark=("tickets", 42), hold=[held])
        assert (q.new, q.newly_held, box.watermark("tickets"), box.depth()) == ((good.event_id,), (held,), 42, 1)
    finally:
        box.close()
