"""Judge one rating: does it count toward an officer's score, and to whom?

Rules (DESIGN.md, integrity), in order, each a stable rejection reason:

1. the payload names the device and centre of its topic (``topic_mismatch``);
2. the registry knows the device (``unknown_device``, ``retired_device``) and
   assigns it this centre (``wrong_centre``) and counter (``wrong_counter``);
3. one event_id, one content: a resend with the same event_id and other content
   (score, reasons, seq, ...; all but ``sent_at``, which a resend re-stamps) is
   ``conflicting_event``; an identical resend rebuilds the identical point
   (idempotent write) and is not new (no second escalation);
4. its timestamps are possible (``absurd_timestamp``; see clock.py);
5. a walk-up (no ticket) is accepted only where the centre allows walk-ups
   (``walkup_not_allowed``), stored ``walkup=true``; the officer it names is kept
   only if the registry knows that officer at that centre, else stored as "";
6. in a QMS centre a ticket-bound rating binds to a QMS close of its ticket at its
   counter (tickets.py: ticket instances), the latest at or before the rating; the
   window is measured from THAT close (the device's ``closed_at`` is not trusted:
   ``outside_window``), no such close is ``unknown_ticket``; officer and service
   are the close's, the terminal's officer is kept as ``terminal_officer``;
7. one rating per ticket instance (``duplicate_ticket``);
8. without a QMS the terminal's officer stands (a counter's registered officer,
   when set, must match: ``officer_mismatch``) and the window is the device's;
9. a web rating (``input`` "web", device "web": a citizen's phone through the web rating
   service) is judged like a terminal rating of the same ticket instance: it binds to the
   QMS close of its vendor ticket id, else of its number on its service day (at any counter,
   unless the link named one), and is credited to that close's counter, officer and service;
   rated after the link's expiry or ``web_window_s`` after the close is ``link_expired``; a
   second rating of the instance through any channel is ``duplicate_ticket`` (first wins); it
   waits up to ``web_hold_s`` for a close (a slip scanned in the queue), then ``unknown_ticket``.
   A ticket instance the index does not remember (rated days later, after a restart, at a busy
   counter) is looked up in InfluxDB off this thread (lookup.py) while the rating is held: its
   closes and any rating already stored for it; never refused while that answer is outstanding.
   A centre without a QMS cannot bind a phone rating to a served ticket: ``unknown_ticket``.
   A link a counter terminal signed (source ``terminal-qr``, its counter's own key) whose ticket
   was closed at another counter is ``wrong_counter``: a terminal offers only its counter's tickets.

A rating can overtake its ``ticket_closed``: then :data:`HOLD` is returned and the
service re-judges it, until ``hold_grace_s`` after it first arrived. A device may
keep at most ``max_held_per_device`` ratings waiting and start new holds at
``hold_rate_per_s`` (token bucket): beyond that ``hold_budget_exceeded``, so one
device flooding never-closed tickets cannot crowd out the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, NamedTuple

from broker.contract import WEB_ANY_COUNTER, RatingEvent, Topic, check_rating_topic
from storage.influxql import InfluxQL
from storage.lineproto import Point
from storage.schema import WALKUP_FALSE, Field, Measurement, Tag

from .clock import ClockCorrector, RatingTimes
from .config import IntegritySettings
from .lookup import CloseLookup, LookupKey
from .points import rating_point
from .registry import Placement, RegistryHolder
from .rejection import RuleRejection
from .tickets import TicketIndex, counter_scoped

log = logging.getLogger("hailong.ingest")


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD: Final = _Hold()


_DIGEST_EXCLUDE: Final = {"sent_at"}
_serialize = RatingEvent.__pydantic_serializer__.to_json


def content_digest(event: RatingEvent) -> str:
    """Hash of everything a resend must repeat (all but ``sent_at``, re-stamped on every publish).

    The bytes of ``event.model_dump_json(exclude={"sent_at"})`` (stored digests depend on them), from
    the model's serializer directly: the same bytes without model_dump_json's wrapper and str round trip.
    """
    return hashlib.blake2b(_serialize(event, exclude=_DIGEST_EXCLUDE), digest_size=8).hexdigest()


class Attribution(NamedTuple):
    """How an accepted rating was stored; a redelivery rebuilds the identical point from it.

    NamedTuples here and in :class:`Accepted`: built for every rating (see tickets.Close)."""

    officer: str
    service: str
    ticket_id: str | None
    bound_close_ms: int | None  # the QMS close the rating answers (None: walk-up or no QMS)
    terminal_officer: str | None
    response_ms: int | None
    rated_ms: int
    corrected: bool
    officer_verified: bool  # the officer is the QMS's or a registered officer of the centre
    counter: str | None = None  # a web rating's counter: its close's (None: the rating's own)


class Accepted(NamedTuple):
    point: Point
    attribution: Attribution
    new: bool  # first acceptance of this event_id; False for an identical redelivery (no escalation)


@dataclass(slots=True)
class _Seen:
    digest: str
    attribution: Attribution | None  # None: judged but not (yet) accepted


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RatingJudge:
    def __init__(self, settings: IntegritySettings, registry: RegistryHolder, index: TicketIndex,
                 clock: ClockCorrector) -> None:
        self.settings = settings
        self.registry = registry
        self.index = index
        self.clock = clock
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._held: dict[str, set[str]] = {}  # device -> event_ids waiting for their ticket_closed
        self._buckets: dict[str, _Bucket] = {}
        self.lookup: CloseLookup | None = None  # set by the service: web ratings older than the index

    # ------------------------------------------------------------------ entry point

    def judge(self, topic: Topic, event: RatingEvent, received_ms: int, now_ms: int) -> Accepted | _Hold:
        """The accepted rating, HOLD, or raise RuleRejection with the rejection reason.

        ``received_ms`` is when the message first arrived (held ratings keep it).
        """
        check_rating_topic(topic, event)
        place = self.registry.check_device(event.device, topic.centre, event.counter)
        digest = content_digest(event)
        seen = self._seen.get(event.event_id)
        if seen is not None and seen.digest != digest:
            raise RuleRejection("conflicting_event", f"event {event.event_id} was already received with other "
                                "content; one event_id is one rating", "event_id")
        if seen is not None and seen.attribution is not None:
            return Accepted(self._point(event, place, digest, seen.attribution), seen.attribution, new=False)
        judged = _Seen(digest, None)
        self._remember(event.event_id, judged)
        try:
            verdict = self._judge_new(event, place, received_ms, now_ms)
        except RuleRejection:
            self._release(event)
            raise
        if verdict is HOLD:
            self._hold(event)
            return HOLD
        assert isinstance(verdict, Attribution)
        self._release(event)
        judged.attribution = verdict  # in place: still the entry remembered above (nothing ran in between)
        return Accepted(self._point(event, place, digest, verdict), verdict, new=True)

    def _point(self, event: RatingEvent, place: Placement, digest: str, a: Attribution) -> Point:
        return rating_point(event, place.province, rated_at_ms=a.rated_ms, clock_corrected=a.corrected,
                            officer=a.officer, service=a.service, response_ms=a.response_ms,
                            terminal_officer=a.terminal_officer, ticket_id=a.ticket_id,
                            bound_close_ms=a.bound_close_ms, digest=digest, counter=a.counter)

    # ------------------------------------------------------------------ the rules

    def _judge_new(self, event: RatingEvent, place: Placement, received_ms: int,
                   now_ms: int) -> Attribution | _Hold:
        times = self.clock.times(event, received_ms)
        if event.input == "web":
            return self._web_ticket(event, place, times, received_ms, now_ms)
        if event.ticket is None:
            return self._walkup(event, place, times)
        if place.enforce_tickets and place.has_qms:
            return self._qms_ticket(event, place, times, received_ms, now_ms)
        return self._device_ticket(event, place, times)

    def _walkup(self, event: RatingEvent, place: Placement, times: RatingTimes) -> Attribution:
        if place.enforce_tickets and not place.walkup_allowed:
            raise RuleRejection("walkup_not_allowed",
                                f"centre {event.centre!r} does not accept ratings without a ticket", "ticket")
        verified = place.enforce_tickets and self.registry.officer_of_centre(event.officer, event.centre)
        # an unverifiable claim is not stored as an officer (no new series, never routed to an alert);
        # without a registry (development) the claim is kept but still never escalated by name
        officer = event.officer if verified or not place.enforce_tickets else ""
        return Attribution(officer, event.service or "", event.ticket_id, None, None, None,
                           times.rated_at_ms, times.corrected, verified)

    def _device_ticket(self, event: RatingEvent, place: Placement, times: RatingTimes) -> Attribution:
        """No QMS (or no registry): the terminal's own close stands, one rating per ticket instance."""
        assert event.ticket is not None and times.closed_at_ms is not None
        s = self.settings
        response_ms = event.rated_at - (event.closed_at or 0)  # both from the device: immune to its offset
        if place.enforce_tickets:
            inst, _ = self.index.closed(event.centre, event.counter, counter_scoped(event.counter, event.ticket),
                                        event.officer, event.service or "", times.closed_at_ms, event.ticket_id)
            self._check_not_rated(event, inst.rated_by)
            if response_ms > s.rating_window_s * 1000 or response_ms < -s.early_tolerance_s * 1000:
                raise self._outside(event, response_ms)
            if place.counter_officer and place.counter_officer != event.officer:
                raise RuleRejection("officer_mismatch", f"counter {event.counter!r} credits officer "
                                    f"{place.counter_officer!r} (registry), the rating names {event.officer!r}",
                                    "officer")
            inst.rated_by = event.event_id
        # the terminal's officer stands for the score; an escalation names it only if the registry knows it here
        verified = place.enforce_tickets and self.registry.officer_of_centre(event.officer, event.centre)
        return Attribution(event.officer, event.service or "", event.ticket_id, None, None, response_ms,
                           times.rated_at_ms, times.corrected, verified)

    def _qms_ticket(self, event: RatingEvent, place: Placement, times: RatingTimes, received_ms: int,
                    now_ms: int) -> Attribution | _Hold:
        assert event.ticket is not None
        s = self.settings
        early, window = s.early_tolerance_s * 1000, s.rating_window_s * 1000
        rated = times.rated_at_ms
        # On our clock the citizen rated at the latest when it arrived minus how long it waited in the
        # device's outbox (measured on the device clock, so its offset cancels): a terminal whose clock is
        # behind is judged by this, one whose message waited on the broker by ``rated``.
        latest = max(rated, received_ms - max(0, event.sent_at - event.rated_at))
        closes = self.index.closes_at(event.centre, event.counter, event.ticket, event.ticket_id)
        # The close it answers: the latest at or before the rating by the terminal's (corrected) clock; only
        # when there is none in the window, the latest before it reached us (a clock behind). Judged against
        # arrival alone, a rating held or replayed from a backlog would bind to a later close of the same
        # number (the recall after it, or the next day's ticket) that had arrived meanwhile.
        by_rated = [(inst, c) for inst, c in closes if c.at_ms <= rated + early][-1:]
        by_arrival = [(inst, c) for inst, c in closes if c.at_ms <= latest + early][-1:]
        responses: list[int] = []  # the first is the one a rejection reports
        for inst, close in by_rated + by_arrival:
            response = rated - close.at_ms
            if response < -early:
                response = latest - close.at_ms
            responses.append(response)
            if -early <= response <= window:
                self._check_not_rated(event, inst.rated_by)
                inst.rated_by = event.event_id
                terminal = event.officer if event.officer != close.officer else None
                return Attribution(close.officer, close.service or event.service or "",
                                   inst.ticket_id or event.ticket_id, close.at_ms, terminal, max(0, response),
                                   rated, times.corrected, True)
        if now_ms - received_ms < s.hold_grace_s * 1000:
            return HOLD  # its ticket_closed (today's, this counter's) may not have arrived yet
        if responses:
            raise self._outside(event, responses[0])
        raise RuleRejection("unknown_ticket", f"no ticket_closed for {event.ticket!r} at counter "
                            f"{event.counter!r} within {s.hold_grace_s:g}s", "ticket")

    def _web_ticket(self, event: RatingEvent, place: Placement, times: RatingTimes, received_ms: int,
                    now_ms: int) -> Attribution | _Hold:
        """A citizen's phone rating: the same ticket instance, the same one rating per ticket (rule 9)."""
        assert event.ticket is not None and event.service_day is not None
        s = self.settings
        rated = times.rated_at_ms
        if event.link_expires_at is not None and rated > event.link_expires_at:
            raise RuleRejection("link_expired", f"rated {(rated - event.link_expires_at) / 1000:.0f}s after its "
                                "link expired", "link_expires_at")
        if not (place.enforce_tickets and place.has_qms):
            raise RuleRejection("unknown_ticket", f"centre {event.centre!r} has no queue system to bind a web "
                                "rating to a served ticket", "ticket")
        counter = None if event.counter == WEB_ANY_COUNTER else event.counter
        found = self.index.web_close(event.centre, event.ticket, event.service_day, event.ticket_id, counter,
                                     rated + s.early_tolerance_s * 1000)
        looked_up = ""
        if found is None and self.lookup is not None:
            key = LookupKey(event.centre, event.ticket, event.service_day, event.ticket_id)
            if not self.lookup.ask(key, self.registry.timezone_of(event.centre)):
                return HOLD  # InfluxDB has not answered yet: a rating is never refused for a slow database
            looked_up = " (not among the ingest's recent tickets, nor in InfluxDB)"
            found = self.index.web_close(event.centre, event.ticket, event.service_day, event.ticket_id, counter,
                                         rated + s.early_tolerance_s * 1000)
        if found is None and event.source == "terminal-qr":
            # signed by the terminal at ``counter`` (its own key, web service checked): a ticket served at
            # another counter is not that terminal's to offer for rating (a stolen or misused terminal)
            elsewhere = self.index.web_close(event.centre, event.ticket, event.service_day, event.ticket_id, None,
                                             rated + s.early_tolerance_s * 1000)
            if elsewhere is not None:
                raise RuleRejection("wrong_counter", f"terminal link of counter {counter!r} for ticket "
                                    f"{event.ticket!r} of {event.service_day}, which was closed at counter "
                                    f"{elsewhere[1].counter!r}", "counter")
        if found is None:
            if now_ms - received_ms < s.web_hold_s * 1000:
                return HOLD  # scanned while waiting: its ticket_closed is still to come
            raise RuleRejection("unknown_ticket", f"no ticket_closed for {event.ticket!r} of {event.service_day}"
                                f"{' (vendor id ' + repr(event.ticket_id) + ')' if event.ticket_id else ''}"
                                f"{looked_up} within {s.web_hold_s:g}s", "ticket")
        inst, close = found
        response = rated - close.at_ms
        if response > s.web_window_s * 1000:
            raise RuleRejection("link_expired", f"rated {response / 86_400_000:.1f} days after ticket "
                                f"{event.ticket!r} closed (web window {s.web_window_s // 86_400} days)", "rated_at")
        self._check_not_rated(event, inst.rated_by)
        inst.rated_by = event.event_id
        return Attribution(close.officer, close.service or event.service or "", inst.ticket_id or event.ticket_id,
                           close.at_ms, None, max(0, response), rated, times.corrected, True, close.counter)

    def _check_not_rated(self, event: RatingEvent, rated_by: str | None) -> None:
        if rated_by is not None and rated_by != event.event_id:
            raise RuleRejection("duplicate_ticket", f"ticket {event.ticket!r} at counter {event.counter!r} was "
                                f"already rated (event {rated_by})", "ticket")

    def _outside(self, event: RatingEvent, response_ms: int) -> RuleRejection:
        return RuleRejection("outside_window", f"rated {response_ms / 1000:.1f}s after ticket {event.ticket!r} "
                             f"closed (window {self.settings.rating_window_s}s)", "rated_at")

    # ------------------------------------------------------------------ per-device hold budget

    @staticmethod
    def _holder(event: RatingEvent) -> str:
        # the web service speaks for every centre under one device id: its hold budget is per centre
        return f"{event.device}@{event.centre}" if event.input == "web" else event.device

    def _hold(self, event: RatingEvent) -> None:
        holder = self._holder(event)
        held = self._held.setdefault(holder, set())
        if event.event_id in held:
            return
        s = self.settings
        now = time.monotonic()
        bucket = self._buckets.get(holder) or _Bucket(float(s.hold_burst), now)
        bucket.tokens = min(float(s.hold_burst), bucket.tokens + (now - bucket.at) * s.hold_rate_per_s)
        bucket.at = now
        self._buckets[holder] = bucket
        if len(held) >= s.max_held_per_device or bucket.tokens < 1:
            self._seen.pop(event.event_id, None)  # not judged: a later identical resend is judged afresh
            raise RuleRejection("hold_budget_exceeded", f"device {event.device!r} already has {len(held)} "
                                f"ratings waiting for their ticket_closed (max {s.max_held_per_device}, "
                                f"{s.hold_rate_per_s:g}/s)", "ticket")
        bucket.tokens -= 1
        held.add(event.event_id)

    def _release(self, event: RatingEvent) -> None:
        holder = self._holder(event)
        held = self._held.get(holder)
        if held is not None:
            held.discard(event.event_id)
            if not held:
                del self._held[holder]

    def held_count(self, device: str) -> int:
        return len(self._held.get(device, ()))

    # ------------------------------------------------------------------ memory

    def _remember(self, event_id: str, seen: _Seen) -> None:
        if event_id in self._seen:
            self._seen.move_to_end(event_id)  # a new key is appended last already
        self._seen[event_id] = seen
        while len(self._seen) > self.settings.events_remembered:
            self._seen.popitem(last=False)

    def rebuild(self, db: InfluxQL, lookback_s: int) -> int:
        """Remember recent ratings (event, content, attribution) and mark their ticket instances rated.

        Run after the ticket index was rebuilt, so each rating finds the instance it was bound to.
        """
        rows = db.rows(
            f'SELECT "{Field.EVENT_ID}", "{Field.DIGEST}", "{Field.TICKET}", "{Field.TICKET_ID}", '
            f'"{Field.CLOSED_AT_MS}", "{Field.TERMINAL_OFFICER}", "{Field.RESPONSE_MS}", "{Field.CLOCK_CORRECTED}", '
            f'"{Tag.OFFICER}", "{Tag.SERVICE}", "{Tag.CENTRE}", "{Tag.COUNTER}", "{Tag.WALKUP}" '
            f'FROM "{Measurement.RATING}" WHERE time > now() - {int(lookback_s)}s')
        for row in rows:
            event_id, centre, counter = row.get(Field.EVENT_ID), row.get(Tag.CENTRE), row.get(Tag.COUNTER)
            if not (event_id and centre and counter):
                continue
            number = row.get(Field.TICKET)
            tid = str(row[Field.TICKET_ID]) if row.get(Field.TICKET_ID) else None
            bound = int(row[Field.CLOSED_AT_MS]) if row.get(Field.CLOSED_AT_MS) is not None else None
            rated = int(row["time"])
            response = int(row[Field.RESPONSE_MS]) if row.get(Field.RESPONSE_MS) is not None else None
            if number and row.get(Tag.WALKUP) == WALKUP_FALSE:
                if self.registry.has_qms(centre):
                    inst = self.index.find(centre, counter, str(number), tid, bound, rated)
                elif response is not None:  # no QMS: the instance is the terminal's own close
                    inst, _ = self.index.closed(centre, counter, counter_scoped(counter, str(number)),
                                                str(row.get(Tag.OFFICER) or ""), str(row.get(Tag.SERVICE) or ""),
                                                rated - response, tid)
                else:
                    inst = None
                if inst is not None:
                    inst.rated_by = str(event_id)
            if row.get(Field.DIGEST):
                term = row.get(Field.TERMINAL_OFFICER)
                self._remember(str(event_id), _Seen(str(row[Field.DIGEST]), Attribution(
                    str(row.get(Tag.OFFICER) or ""), str(row.get(Tag.SERVICE) or ""), tid, bound,
                    str(term) if term else None, response, rated, bool(row.get(Field.CLOCK_CORRECTED)),
                    True, str(counter))))  # the stored counter: a web rating's is its close's
        log.info("rating judge rebuilt: %d recent ratings (last %ds)", len(rows), lookback_s)
        return len(rows)
