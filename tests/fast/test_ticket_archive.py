"""The ticket index's archive (ingest/tickets.py): rated instances pushed out of the recent tickets and instances
read back from InfluxDB for late web ratings (ingest/lookup.py) are remembered apart, bounded, oldest out first."""

from __future__ import annotations

from ingest.tickets import CloseKind, TicketIndex
from storage.influxql import string_literal

T0 = 1_765_000_000_000


def day(centre: str, ms: int) -> str:
    return str((ms - T0) // 86_400_000)  # "service day" 0, 1, ... from T0 (no zone needed here)


def test_a_rated_ticket_pushed_out_of_the_recent_tickets_stays_rated() -> None:
    index = TicketIndex(per_counter=16, reclose_window_s=3600, day_of=day, archived=100)
    rated, _ = index.closed("c", "q1", "A-001", "cb1", "s", T0)
    rated.rated_by = "ev-1"
    index.closed("c", "q1", "A-002", "cb1", "s", T0 + 1000)  # never rated
    for i in range(40):
        index.closed("c", "q1", f"B-{i:03d}", "cb1", "s", T0 + 10_000 + i)
    assert len(index) == 16 and index.archived_count() == 1
    assert [(inst.rated_by, c.officer) for inst, c in index.closes_at("c", "q1", "A-001")] == [("ev-1", "cb1")]
    assert index.closes_at("c", "q1", "A-002") == []  # an unrated one is forgotten (InfluxDB has it)
    # a re-close of the archived ticket is a re-close, not a second served ticket
    assert index.closed("c", "q2", "A-001", "cb2", "s", T0 + 60_000)[1] is CloseKind.RECLOSE


def test_closes_read_back_go_to_the_archive_without_pushing_recent_tickets_out() -> None:
    index = TicketIndex(per_counter=16, reclose_window_s=3600, day_of=day, archived=2)
    for i in range(16):
        index.closed("c", "q1", f"B-{i:03d}", "cb1", "s", T0 + 6 * 86_400_000 + i)
    for n, at in (("A-005", T0), ("A-006", T0 + 1), ("A-007", T0 + 2)):
        assert index.closed("c", "q1", n, "cb-old", "s", at, archive=True)[1] is CloseKind.FIRST
    assert len(index) == 16 and index.archived_count() == 2  # bounded: A-005, the oldest, went first
    assert index.web_close("c", "A-005", "0", None, None, T0 + 86_400_000) is None
    found = index.web_close("c", "A-006", "0", None, None, T0 + 86_400_000)
    assert found is not None and found[1].officer == "cb-old"
    assert index.mark_rated("c", "q1", "A-006", None, T0 + 1, "ev-7")
    assert not index.mark_rated("c", "q1", "A-006", None, T0 + 999, "ev-8")  # bound to no close we know
    assert found[0].rated_by == "ev-7"
    assert index.mark_rated("c", "q1", "A-006", None, T0 + 1, "ev-9") and found[0].rated_by == "ev-7"  # first wins


def test_string_literal_escapes_quotes_and_backslashes() -> None:
    assert string_literal("A-1") == "'A-1'"
    assert string_literal("x'y\\z") == "'x\\'y\\\\z'"
