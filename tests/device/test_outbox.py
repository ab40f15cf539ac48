"""The SQLite outbox on a real file: durability settings, seq across restarts, bounded size, parking."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker.contract import parse_rating
from device.outbox import Outbox
from device.state import RatingDraft, StorageFull

DRAFT = RatingDraft(officer="cb01", ticket="A-1", service="ho-tich", dossier=None, closed_at=1_000, scale=4,
                    score=3, reasons=(), input="touch", rated_at=2_000, mono_ms=55)


def make(path: Path, **kw: object) -> Outbox:
    return Outbox(path, device="d1", centre="c1", counter="q01", boot_id="b1", **kw)  # type: ignore[arg-type]


def test_commit_is_durable_wal_full_and_seq_survives_reopen(tmp_path: Path) -> None:
    ob = make(tmp_path / "o.sqlite3")
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    events = [ob.commit(DRAFT) for _ in range(3)]
    assert [e.seq for e in events] == [0, 1, 2] and len({e.event_id for e in events}) == 3
    ob.delete(0)
    ob.close()
    # a second connection (another process after kill -9) sees exactly what was committed
    raw = sqlite3.connect(tmp_path / "o.sqlite3").execute("SELECT seq, payload FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in raw] == [1, 2]
    stored = parse_rating(raw[0][1])
    assert stored.event_id == events[1].event_id and stored.boot_id == "b1" and stored.mono_ms == 55
    ob2 = make(tmp_path / "o.sqlite3")
    assert ob2.depth == 2 and ob2.commit(DRAFT).seq == 3  # seq never goes back, even after deletes
    assert [s for s, _ in ob2.pending()] == [1, 2, 3] and [s for s, _ in ob2.pending(after_seq=1, limit=1)] == [2]


def test_full_outbox_refuses_new_ratings_and_keeps_old_ones(tmp_path: Path) -> None:
    ob = make(tmp_path / "o.sqlite3", max_ratings=10, high_water=0.8)
    for i in range(8):
        ob.commit(DRAFT)
        assert ob.nearly_full == (i >= 7)
    ob.commit(DRAFT)
    ob.commit(DRAFT)
    assert not ob.has_room()
    with pytest.raises(StorageFull, match="10 of 10"):
        ob.commit(DRAFT)
    assert ob.depth == 10 and [s for s, _ in ob.pending()] == list(range(10))
    ob.delete(0)
    assert ob.has_room() and ob.commit(DRAFT).seq == 10


def test_refused_rating_is_parked_not_lost(tmp_path: Path) -> None:
    ob = make(tmp_path / "o.sqlite3")
    e = ob.commit(DRAFT)
    ob.park(e.seq, "Not authorized")
    assert ob.depth == 0 and ob.parked_count() == 1
    row = ob._db.execute("SELECT event_id, reason FROM parked").fetchone()
    assert row == (e.event_id, "Not authorized")


def test_walkup_draft_stores_null_ticket(tmp_path: Path) -> None:
    ob = make(tmp_path / "o.sqlite3")
    e = ob.commit(RatingDraft(officer="cb01", ticket=None, service=None, dossier=None, closed_at=None, scale=3,
                              score=1, reasons=("thai_do",), input="button", rated_at=5, mono_ms=6))
    assert e.walkup and e.reasons == ("thai_do",) and e.input == "button"


def test_the_vendor_ticket_id_is_stored_and_sent_with_the_rating(tmp_path: Path) -> None:
    from dataclasses import replace

    ob = make(tmp_path / "o.sqlite3")
    event = ob.commit(replace(DRAFT, ticket_id="884213"))
    (_, sent), = ob.pending()
    assert event.ticket_id == "884213" and parse_rating(sent.to_json()).ticket_id == "884213"
    ob.close()
