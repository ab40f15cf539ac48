"""The recent-ticket index: which tickets were closed at a counter, by whom, and which rating took them.

One bounded ordered map per (centre, counter): a counter serves a few hundred
citizens a day, so the last ``tickets_per_counter`` tickets cover every rating
that can still be inside its window, and memory stays bounded however long the
service runs. Eviction is by count, not wall-clock age, so replaying an old
backlog after an outage judges it against the tickets of that time.

Every ingest instance subscribes to the QMS topics WITHOUT ``$share``: ratings
are spread over the instances, so each instance must know every closed ticket.
After a restart the index is rebuilt from InfluxDB: recent ``ticket`` points
(closed tickets) AND recent ``rating`` points (tickets already rated), so that
a second rating for a ticket rated before the restart is still a duplicate and
a redelivered rating (same event_id) is still recognised as itself.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from .influxql import InfluxQL

log = logging.getLogger("hailong.ingest")

CounterKey = tuple[str, str]


@dataclass(slots=True)
class TicketEntry:
    officer: str | None = None  # None: we only know it was rated (no ticket_closed seen)
    closed_at_ms: int | None = None
    rated_by: str | None = None  # event_id of the rating that counts for this ticket


class TicketIndex:
    def __init__(self, per_counter: int) -> None:
        self.per_counter = per_counter
        self._counters: dict[CounterKey, OrderedDict[str, TicketEntry]] = {}

    def __len__(self) -> int:
        return sum(len(t) for t in self._counters.values())

    def _entry(self, centre: str, counter: str, ticket: str) -> TicketEntry:
        tickets = self._counters.setdefault((centre, counter), OrderedDict())
        entry = tickets.get(ticket)
        if entry is None:
            entry = tickets[ticket] = TicketEntry()
            while len(tickets) > self.per_counter:
                tickets.popitem(last=False)
        return entry

    def get(self, centre: str, counter: str, ticket: str) -> TicketEntry | None:
        tickets = self._counters.get((centre, counter))
        return tickets.get(ticket) if tickets is not None else None

    def closed(self, centre: str, counter: str, ticket: str, officer: str, closed_at_ms: int) -> None:
        entry = self._entry(centre, counter, ticket)
        entry.officer = officer
        entry.closed_at_ms = closed_at_ms

    def rated(self, centre: str, counter: str, ticket: str, event_id: str) -> None:
        self._entry(centre, counter, ticket).rated_by = event_id

    def rebuild(self, db: InfluxQL, lookback_s: int) -> tuple[int, int]:
        """Load recent ticket and rating points (oldest first); return (tickets, rated) loaded.

        Raises InfluxQueryError when InfluxDB cannot answer: the caller must not
        judge ratings with an empty index, or valid ratings would be rejected.
        """
        since = f"time > now() - {int(lookback_s)}s"
        tickets = db.rows(f'SELECT "ticket", "officer", "centre", "counter" FROM "ticket" WHERE {since}')
        for row in tickets:
            if row.get("ticket") and row.get("centre") and row.get("counter"):
                self.closed(row["centre"], row["counter"], str(row["ticket"]), str(row.get("officer") or ""),
                            int(row["time"]))
        rated = db.rows(
            f'SELECT "ticket", "event_id", "centre", "counter" FROM "rating" WHERE {since} AND "walkup" = \'false\''
        )
        for row in rated:
            if row.get("ticket") and row.get("event_id") and row.get("centre") and row.get("counter"):
                self.rated(row["centre"], row["counter"], str(row["ticket"]), str(row["event_id"]))
        log.info("ticket index rebuilt: %d ticket points, %d rated tickets (last %ds)",
                 len(tickets), len(rated), lookback_s)
        return len(tickets), len(rated)
