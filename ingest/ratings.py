"""Judge one rating: does it count toward an officer's score?

Rules (DESIGN.md, integrity), in order, each a stable rejection reason:

1. the payload names the device and centre of its topic (``topic_mismatch``);
2. the registry knows the device (``unknown_device``, ``retired_device``) and
   assigns it this centre (``wrong_centre``) and counter (``wrong_counter``);
3. its timestamps are possible (``absurd_timestamp``; see clock.py);
4. a walk-up (no ticket) is accepted only where the centre allows walk-ups
   (``walkup_not_allowed``) and is stored ``walkup=true``;
5. one rating per ticket (``duplicate_ticket``; a redelivery of the SAME
   event_id is not a duplicate: it rewrites its identical point);
6. it was given within the rating window after the close (``outside_window``);
7. the ticket was closed at that counter (``unknown_ticket``, only for centres
   with a QMS), by the officer the rating names (``officer_mismatch``).

A rating can overtake its ``ticket_closed`` (different publishers, different
paths): then :data:`HOLD` is returned and the service re-judges it later,
until ``hold_grace_s`` after it first arrived.
"""

from __future__ import annotations

from typing import Final

from broker.contract import RatingEvent, Topic, check_rating_topic

from .clock import ClockCorrector
from .config import IntegritySettings
from .lineproto import Point
from .points import rating_point
from .registry import RegistryHolder
from .rejection import RuleRejection
from .tickets import TicketIndex


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD: Final = _Hold()


class RatingJudge:
    def __init__(self, settings: IntegritySettings, registry: RegistryHolder, index: TicketIndex,
                 clock: ClockCorrector) -> None:
        self.settings = settings
        self.registry = registry
        self.index = index
        self.clock = clock

    def judge(self, topic: Topic, event: RatingEvent, received_ms: int, now_ms: int) -> Point | _Hold:
        """The ``rating`` point to store, HOLD, or raise RuleRejection with the rejection reason.

        ``received_ms`` is when the message first arrived (held ratings keep it).
        """
        check_rating_topic(topic, event)
        place = self.registry.check_device(event.device, topic.centre, event.counter)
        times = self.clock.times(event, received_ms)
        point = rating_point(event, place.province, rated_at_ms=times.rated_at_ms,
                             closed_at_ms=times.closed_at_ms, clock_corrected=times.corrected)
        if not place.enforce_tickets:
            return point
        if event.ticket is None:
            if not place.walkup_allowed:
                raise RuleRejection("walkup_not_allowed",
                                    f"centre {event.centre!r} does not accept ratings without a ticket", "ticket")
            return point
        entry = self.index.get(event.centre, event.counter, event.ticket)
        if entry is not None and entry.rated_by is not None:
            if entry.rated_by == event.event_id:
                return point  # redelivery: identical point, idempotent write
            raise RuleRejection("duplicate_ticket",
                                f"ticket {event.ticket!r} at counter {event.counter!r} was already rated "
                                f"(event {entry.rated_by})", "ticket")
        # both times come from the device clock, so the window is immune to its offset
        response_ms = event.rated_at - (event.closed_at or 0)
        s = self.settings
        if response_ms > s.rating_window_s * 1000 or response_ms < -s.early_tolerance_s * 1000:
            raise RuleRejection("outside_window", f"rated {response_ms / 1000:.1f}s after ticket "
                                f"{event.ticket!r} closed (window {s.rating_window_s}s)", "rated_at")
        if entry is not None and entry.officer is not None:
            if entry.officer != event.officer:
                raise RuleRejection("officer_mismatch", f"ticket {event.ticket!r} was closed by officer "
                                    f"{entry.officer!r}, the rating names {event.officer!r}", "officer")
        elif not place.has_qms and place.counter_officer and place.counter_officer != event.officer:
            raise RuleRejection("officer_mismatch", f"counter {event.counter!r} credits officer "
                                f"{place.counter_officer!r} (registry), the rating names {event.officer!r}", "officer")
        elif place.has_qms:
            if now_ms - received_ms < s.hold_grace_s * 1000:
                return HOLD
            raise RuleRejection("unknown_ticket", f"no ticket_closed for {event.ticket!r} at counter "
                                f"{event.counter!r} within {s.hold_grace_s:g}s", "ticket")
        self.index.rated(event.centre, event.counter, event.ticket, event.event_id)
        return point
