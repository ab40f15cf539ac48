"""The recent-ticket index: ticket INSTANCES closed at a centre, by whom, and which rating took them.

Ticket numbers are not unique (DESIGN.md, integrity rules): queue machines restart at
A001 every morning, some per queue prefix, some wrap within a day. A ticket instance is

- the vendor's ticket id, when the QMS sends one (``ticket_id``), else
- (centre, number, service day in the centre's time zone, generation): a close of the
  same number on the same service day within ``reclose_window_s`` of the instance's
  first close is a recall/re-close of that ticket; a later one is a new ticket (the
  numbering wrapped).

A recall/re-close is served once (only an instance's first close writes a ``ticket``
point; a redelivered first close rewrites its identical point) and rated at most once.
A rating binds to one close of an instance: same counter, same number, the latest close
at or before the rating (ratings.py), never to an earlier day's ticket.

Memory is bounded per centre (``tickets_per_counter`` x counters seen). Eviction is by
count, not wall-clock age, so replaying an old backlog judges it against the tickets of
that time. Beside the recent tickets, an ARCHIVE (``tickets_archived`` instances, the oldest
out first) holds the instances a late web rating needed and the ingest looked up in
InfluxDB (lookup.py: a link lives 7 days after its service day, far beyond the recent
tickets of a busy counter or a restart's lookback), and every RATED instance pushed out of
the recent tickets, so "already rated" is never forgotten before that rating is written.

Every instance subscribes to the QMS topics WITHOUT ``$share``, so each knows every closed
ticket. After a restart the index is rebuilt from InfluxDB ``ticket`` and
``ticket_reclose`` points through the same :meth:`TicketIndex.closed` (so the same identities), and the
rating judge marks the instances already rated (ratings.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from storage.influxql import InfluxQL
from storage.schema import Field, Measurement, Tag

log = logging.getLogger("hailong.ingest")

MAX_CLOSES = 8  # re-closes remembered per instance (a recall loop must not grow memory)
DayOf = Callable[[str, int], str]  # (centre, epoch ms) -> service day "YYYY-MM-DD" in the centre's zone


class Close(NamedTuple):
    """One ticket_closed of an instance: where, by whom, for which service, when (QMS clock).

    A NamedTuple, not a frozen dataclass: one is built per rating in a centre without a QMS, and a
    frozen dataclass's __init__ was a visible share of the judge (issue 14 profile)."""

    counter: str
    officer: str
    service: str
    at_ms: int


@dataclass(slots=True)
class TicketInstance:
    centre: str
    number: str
    day: str
    ticket_id: str | None
    first_at_ms: int
    closes: list[Close] = field(default_factory=list)
    rated_by: str | None = None  # event_id of the rating that counts for this ticket

    @property
    def first(self) -> Close:
        return self.closes[0]


def counter_scoped(counter: str, number: str) -> str:
    """The index key of a ticket number in a centre WITHOUT a QMS: the terminal numbers its own tickets,
    so the same number at two counters is two tickets ("/" cannot start a ticket number)."""
    return f"{counter}//{number}"


class CloseKind(Enum):
    FIRST = "first"  # a new ticket instance: write its ticket point
    REPEAT = "repeat"  # the first close again (redelivery): rewrite the identical point
    RECLOSE = "reclose"  # a recall/re-close of a served ticket: no second ticket point


class TicketIndex:
    def __init__(self, per_counter: int, reclose_window_s: int, day_of: DayOf, archived: int = 20_000) -> None:
        self.per_counter = per_counter
        self.archived = archived
        self.reclose_window_ms = reclose_window_s * 1000
        self.day_of = day_of
        self._numbers: dict[tuple[str, str], list[TicketInstance]] = {}  # (centre, number) -> instances
        self._vendor: dict[tuple[str, str], TicketInstance] = {}  # (centre, ticket_id) -> instance
        self._order: dict[str, OrderedDict[int, TicketInstance]] = {}  # per centre, oldest first
        self._counters: dict[str, set[str]] = {}
        # the archive: the same two lookups, one LRU order over all centres
        self._a_numbers: dict[tuple[str, str], list[TicketInstance]] = {}
        self._a_vendor: dict[tuple[str, str], TicketInstance] = {}
        self._a_order: OrderedDict[int, TicketInstance] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(o) for o in self._order.values())

    # ------------------------------------------------------------------ closes

    def _identify(self, centre: str, number: str, day: str, at_ms: int,
                  ticket_id: str | None) -> TicketInstance | None:
        if ticket_id is not None:
            return self._vendor.get((centre, ticket_id)) or self._a_vendor.get((centre, ticket_id))
        for numbers in (self._numbers, self._a_numbers):
            for inst in reversed(numbers.get((centre, number), ())):
                if inst.ticket_id is None and inst.day == day and \
                        abs(at_ms - inst.first_at_ms) <= self.reclose_window_ms:
                    return inst
        return None

    def closed(self, centre: str, counter: str, number: str, officer: str, service: str, at_ms: int,
               ticket_id: str | None = None, archive: bool = False) -> tuple[TicketInstance, CloseKind]:
        """Record a ticket_closed; say whether it is a new instance, its first close again, or a re-close.

        ``archive``: a close read back from InfluxDB for a late web rating; a new instance goes to the
        archive, not among the recent tickets (it must not push a counter's live tickets out)."""
        close = Close(counter, officer, service, at_ms)
        day = self.day_of(centre, at_ms)
        inst = self._identify(centre, number, day, at_ms, ticket_id)
        if inst is None:
            inst = TicketInstance(centre, number, day, ticket_id, at_ms, [close])
            if archive:
                self._archive(inst)
            else:
                self._add(inst, counter)
            return inst, CloseKind.FIRST
        if close == inst.first:
            return inst, CloseKind.REPEAT
        if close not in inst.closes:
            inst.closes.append(close)  # closes[0] stays the first (the served one, with the ticket point)
            del inst.closes[MAX_CLOSES:]
        return inst, CloseKind.RECLOSE

    def _add(self, inst: TicketInstance, counter: str) -> None:
        _link(self._numbers, self._vendor, inst)
        counters = self._counters.setdefault(inst.centre, set())
        counters.add(counter)
        order = self._order.setdefault(inst.centre, OrderedDict())
        order[id(inst)] = inst
        while len(order) > self.per_counter * len(counters):
            _, old = order.popitem(last=False)
            _unlink(self._numbers, self._vendor, old)
            if old.rated_by is not None:
                self._archive(old)  # its rating may not be written yet: a lookup could not see it

    def _archive(self, inst: TicketInstance) -> None:
        _link(self._a_numbers, self._a_vendor, inst)
        self._a_order[id(inst)] = inst
        while len(self._a_order) > self.archived:
            _, old = self._a_order.popitem(last=False)
            _unlink(self._a_numbers, self._a_vendor, old)

    def archived_count(self) -> int:
        return len(self._a_order)

    def _instances(self, centre: str, number: str, ticket_id: str | None) -> list[TicketInstance]:
        """The remembered instances of ``number`` (recent, then archived), or the one of a vendor ticket id."""
        if ticket_id is not None:
            inst = self._vendor.get((centre, ticket_id)) or self._a_vendor.get((centre, ticket_id))
            return [inst] if inst is not None and inst.number == number else []
        live = self._numbers.get((centre, number), [])
        old = self._a_numbers.get((centre, number)) if self._a_numbers else None
        return live + old if old else live

    # ------------------------------------------------------------------ lookups for ratings

    def closes_at(self, centre: str, counter: str, number: str,
                  ticket_id: str | None = None) -> list[tuple[TicketInstance, Close]]:
        """Every remembered close of ``number`` (or vendor ``ticket_id``) at ``counter``, oldest first.

        A rating naming a vendor id binds only to that ticket (none yet: its close has not arrived).
        """
        instances = self._instances(centre, number, ticket_id)
        found = [(inst, c) for inst in instances for c in inst.closes if c.counter == counter]
        return sorted(found, key=lambda ic: ic[1].at_ms)

    def web_close(self, centre: str, number: str, day: str, ticket_id: str | None, counter: str | None,
                  latest_ms: int) -> tuple[TicketInstance, Close] | None:
        """The close a web rating answers: its vendor ticket id, else its number on its service day (any counter
        unless the link names one); of that instance the latest close at or before ``latest_ms``."""
        instances = self._instances(centre, number, ticket_id)
        if ticket_id is None:
            instances = [i for i in instances if i.day == day]
        best: tuple[TicketInstance, Close] | None = None
        for inst in instances:
            for c in inst.closes:
                if c.at_ms <= latest_ms and (counter is None or c.counter == counter) and (
                        best is None or c.at_ms > best[1].at_ms):
                    best = (inst, c)
        return best

    def find(self, centre: str, counter: str, number: str, ticket_id: str | None,
             closed_at_ms: int | None, rated_ms: int) -> TicketInstance | None:
        """The instance a stored rating was bound to (index rebuild): its close time, else the latest before."""
        closes = self.closes_at(centre, counter, number, ticket_id)
        for inst, c in closes:
            if closed_at_ms is not None and c.at_ms == closed_at_ms:
                return inst
        before = [inst for inst, c in closes if c.at_ms <= rated_ms]
        return before[-1] if before else None

    def mark_rated(self, centre: str, counter: str, number: str, ticket_id: str | None, closed_at_ms: int,
                   event_id: str) -> bool:
        """A stored rating read back (lookup.py) took the instance of the close it is bound to; the first wins."""
        for inst, c in self.closes_at(centre, counter, number, ticket_id):
            if c.at_ms == closed_at_ms:
                if inst.rated_by is None:
                    inst.rated_by = event_id
                return True
        return False

    # ------------------------------------------------------------------ restart

    def rebuild(self, db: InfluxQL, lookback_s: int) -> int:
        """Load recent ticket and re-close points (oldest first) through :meth:`closed`; return how many.

        Re-closes come back too: a rating answering a recall after a restart binds to the recall's close.
        Raises InfluxQueryError when InfluxDB cannot answer: the caller must not
        judge ratings with an empty index, or valid ratings would be rejected.
        """
        rows = [row for m in (Measurement.TICKET, Measurement.TICKET_RECLOSE) for row in db.rows(
            f'SELECT "{Field.TICKET}", "{Field.TICKET_ID}", "{Tag.OFFICER}", "{Tag.SERVICE}", '
            f'"{Tag.CENTRE}", "{Tag.COUNTER}" FROM "{m}" WHERE time > now() - {int(lookback_s)}s', epoch="ns")]
        rows.sort(key=lambda row: int(row["time"]))  # a first close before its re-closes
        for row in rows:
            if row.get(Field.TICKET) and row.get(Tag.CENTRE) and row.get(Tag.COUNTER):
                tid = row.get(Field.TICKET_ID)
                self.closed(row[Tag.CENTRE], row[Tag.COUNTER], str(row[Field.TICKET]),
                            str(row.get(Tag.OFFICER) or ""), str(row.get(Tag.SERVICE) or ""),
                            int(row["time"]) // 1_000_000, str(tid) if tid else None)
        log.info("ticket index rebuilt: %d ticket and re-close points (last %ds)", len(rows), lookback_s)
        return len(rows)


Numbers = dict[tuple[str, str], list[TicketInstance]]
Vendor = dict[tuple[str, str], TicketInstance]


def _link(numbers: Numbers, vendor: Vendor, inst: TicketInstance) -> None:
    """Make ``inst`` findable by its number and, when it has one, its vendor ticket id."""
    numbers.setdefault((inst.centre, inst.number), []).append(inst)
    if inst.ticket_id is not None:
        vendor[(inst.centre, inst.ticket_id)] = inst


def _unlink(numbers: Numbers, vendor: Vendor, old: TicketInstance) -> None:
    """Undo :func:`_link` for an evicted instance (the recent tickets' or the archive's lookups)."""
    same = numbers.get((old.centre, old.number), [])
    # by identity: `in`/`remove` would compare whole instances field by field (dataclass eq)
    for i, other in enumerate(same):
        if other is old:
            del same[i]
            break
    if not same:
        numbers.pop((old.centre, old.number), None)
    if old.ticket_id is not None and vendor.get((old.centre, old.ticket_id)) is old:
        del vendor[(old.centre, old.ticket_id)]
