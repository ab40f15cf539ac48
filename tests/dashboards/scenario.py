"""A realistic published scenario and its legal truth, computed without the ingest.

Three centres in two provinces; c-tt and c-pd (province hue) share counter ids
(q1..q3), c-hl (province qt) rates on a 5-level scale and its QMS sends vendor ticket
ids. 3 ISO weeks (2026-W45..W47), ticket numbers issued per centre and queue prefix (A: ho-tich,
B: dat-dai) restarting at A001/B001 every morning,
recalls (a second close of the same ticket), an officer moving counters mid-week
while the terminal keeps the predecessor's login (terminal/QMS disagreement), a
counter-day at exactly 0 %, two officers tied at 100 % next to a third (ranks 1, 1, 3),
reasons given with "Không hài lòng" and with "Bình thường" ratings, walk-ups, MQTT
redeliveries of the same event and device status messages.

What was *published* is kept (``closes``, ``ratings``, ``statuses``); the truth is
computed from it by the legal rules: a ticket instance is (centre, number, local service
day) or the vendor's ticket id, served once however often it is closed; one rating per instance
(the first, by event id); the officer and service are the QMS close's; walk-ups never
count for an officer. :meth:`Scenario.points` writes what the ingest stores for it
(ingest/points.py plus the agreed ``terminal_officer`` / ``ticket_id`` fields).
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.contract import DeviceStatus, RatingEvent, satisfaction_class
from ingest.lineproto import Point
from ingest.points import rating_point, status_point
from ingest.storage import Field, Measurement, Tag

from .seed import TZ, ms

PROVINCE = "hue"
PROVINCES = {"c-tt": "hue", "c-pd": "hue", "c-hl": "qt"}
SCALES = {"c-tt": 4, "c-pd": 4, "c-hl": 5}
FIRST = datetime(2026, 11, 2, tzinfo=TZ)  # Monday of 2026-W45
DAYS = 19  # to Friday of W47
CENTRES = {"c-tt": ("o-lan", "o-binh", "o-cuong"), "c-pd": ("o-dao", "o-em", "o-gia"), "c-hl": ("o-hoa", "o-khai")}
PERFECT = ("o-dao", "o-em")  # always the top score: tied at 100 %
VENDOR_IDS = ("c-hl",)  # QMS sends a vendor ticket id
ZERO_DAY = ("c-tt", "q2", 9)  # every rating of that counter-day is "Không hài lòng"
MOVER = ("o-cuong", "c-tt", 10)  # from day 10 o-cuong serves at q1 while the terminal still says o-lan
SERVICES = ("ho-tich", "dat-dai")
LOW_REASONS = ("thoi_gian_cho", "thai_do", "thu_tuc", "huong_dan")


@dataclass(frozen=True)
class Close:
    centre: str
    counter: str
    officer: str
    service: str
    ticket: str
    at_ms: int
    ticket_id: str | None = None


@dataclass(frozen=True)
class Published:
    event: RatingEvent
    qms_officer: str | None  # the QMS close's officer (None: walk-up)
    service: str | None
    ticket_id: str | None = None


@dataclass(frozen=True)
class StatusSent:
    status: DeviceStatus
    at_ms: int


@dataclass(frozen=True)
class LegalRating:
    """A rating as the law counts it (attributed officer and service; walk-ups flagged)."""

    time_ns: int
    province: str
    centre: str
    counter: str
    officer: str
    service: str
    device: str
    score: int
    scale: int
    cls: str
    walkup: bool
    ticket: str | None
    reasons: tuple[str, ...]
    response_ms: int | None  # rated - closed (ticket-bound ratings)
    terminal_officer: str  # the terminal's officer where it differs from the QMS's, else ""


@dataclass(frozen=True)
class LegalServed:
    time_ns: int
    province: str
    centre: str
    counter: str
    officer: str
    service: str


def service_day(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, TZ).date().isoformat()


def instance_key(centre: str, ticket: str, closed_at_ms: int, ticket_id: str | None) -> tuple[str, ...]:
    return (centre, ticket_id) if ticket_id else (centre, ticket, service_day(closed_at_ms))


def close_time_ns(c: Close) -> int:
    # the ingest's ticket point time: close ms + a ticket-derived ns offset (ingest/handlers.py)
    return c.at_ms * 1_000_000 + zlib.crc32(c.ticket.encode()) % 1_000_000


@dataclass
class Scenario:
    closes: list[Close] = field(default_factory=list)
    ratings: list[Published] = field(default_factory=list)  # as published, redeliveries included
    statuses: list[StatusSent] = field(default_factory=list)

    # ------------------------------------------------------------------ the legal truth
    def instances(self) -> dict[tuple[str, ...], Close]:
        """Ticket instance -> its first close (a recall is served once).

        DESIGN.md: an instance is (centre, number, local service day), or the vendor's ticket id.
        """
        out: dict[tuple[str, ...], Close] = {}
        for c in sorted(self.closes, key=lambda c: c.at_ms):
            out.setdefault(instance_key(c.centre, c.ticket, c.at_ms, c.ticket_id), c)
        return out

    def counted(self) -> list[Published]:
        """One rating per ticket instance, redeliveries collapsed; walk-ups kept (flagged)."""
        seen_events: set[str] = set()
        seen_tickets: set[tuple[str, ...]] = set()
        out = []
        for p in sorted(self.ratings, key=lambda p: p.event.rated_at):
            e = p.event
            if e.event_id in seen_events:
                continue
            seen_events.add(e.event_id)
            if e.ticket is not None:
                assert e.closed_at is not None
                key = instance_key(e.centre, e.ticket, e.closed_at, p.ticket_id)  # the close it answers
                if key in seen_tickets:
                    continue
                seen_tickets.add(key)
            out.append(p)
        return out

    def legal_ratings(self) -> list[LegalRating]:
        out = []
        for p in self.counted():
            e = p.event
            officer = p.qms_officer if p.qms_officer is not None else e.officer  # walk-up: the terminal's
            out.append(LegalRating(
                e.rated_at * 1_000_000 + e.seq % 1_000_000, PROVINCES[e.centre], e.centre, e.counter, officer,
                p.service or "", e.device, e.score, e.scale, satisfaction_class(e.score, e.scale).value,
                e.ticket is None, e.ticket, tuple(e.reasons),
                None if e.closed_at is None else max(0, e.rated_at - e.closed_at),
                e.officer if p.qms_officer not in (None, e.officer) else ""))
        return out

    def legal_served(self) -> list[LegalServed]:
        return [LegalServed(close_time_ns(c), PROVINCES[c.centre], c.centre, c.counter, c.officer, c.service)
                for c in self.instances().values()]

    def officer_counts(self, centre: str, start_ms: int, end_ms: int) -> dict[str, tuple[int, int, int]]:
        """officer -> (rated, satisfied, served) in [start, end)."""
        rated: Counter[str] = Counter()
        sat: Counter[str] = Counter()
        served: Counter[str] = Counter()
        for p in self.counted():
            e = p.event
            if e.centre == centre and p.qms_officer and start_ms <= e.rated_at < end_ms:
                rated[p.qms_officer] += 1
                sat[p.qms_officer] += satisfaction_class(e.score, e.scale).value != "not_satisfied"
        for c in self.instances().values():
            if c.centre == centre and start_ms <= c.at_ms < end_ms:
                served[c.officer] += 1
        return {o: (rated[o], sat[o], served[o]) for o in set(rated) | set(served)}

    # ------------------------------------------------------------------ seeding
    def points(self) -> list[Point]:
        """Points shaped as the ingest writes them (attributed officer, one per instance)."""
        out = []
        for p in self.counted():
            e = p.event
            if p.qms_officer is not None:
                e = e.model_copy(update={"officer": p.qms_officer, "service": p.service})
            point = rating_point(e, PROVINCES[e.centre])
            extra: dict[str, str] = {}
            if p.qms_officer is not None and p.qms_officer != p.event.officer:
                extra[Field.TERMINAL_OFFICER] = p.event.officer
            if p.ticket_id:
                extra[Field.TICKET_ID] = p.ticket_id
            out.append(Point(point.measurement, point.tags, {**point.fields, **extra}, point.time_ns))
        for c in self.instances().values():
            tags = {Tag.PROVINCE: PROVINCES[c.centre], Tag.CENTRE: c.centre, Tag.COUNTER: c.counter,
                    Tag.OFFICER: c.officer, Tag.SERVICE: c.service}
            out.append(Point(Measurement.TICKET, tags, {Field.TICKET: c.ticket, Field.SERVE_S: 60.0},
                             close_time_ns(c)))
        out += [status_point(st.status, st.at_ms) for st in self.statuses]
        return out


def _score(rnd: random.Random, centre: str, counter: str, officer: str, d: int) -> int:
    if (centre, counter, d) == ZERO_DAY:
        return 1
    if officer in PERFECT:
        return 4
    if SCALES[centre] == 5:
        return rnd.choice((5, 5, 4, 4, 3, 2, 1))
    return rnd.choice((4, 4, 3, 3, 2, 1))


def _reasons(rnd: random.Random, score: int, scale: int) -> tuple[str, ...]:
    if satisfaction_class(score, scale).value == "not_satisfied":
        return tuple(rnd.sample(LOW_REASONS, rnd.randint(1, 2)))
    if score == 2 and scale == 4 and rnd.random() < 0.5:  # "Bình thường" with a reason: counts as satisfied
        return ("huong_dan",)
    return ()


def _event(rnd: random.Random, seq: int, device: str, centre: str, counter: str, login: str, ticket: str | None,
           score: int, reasons: tuple[str, ...], closed: int | None, rated: int) -> RatingEvent:
    return RatingEvent.model_validate({
        "v": 1, "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "seq": seq, "device": device,
        "centre": centre, "counter": counter, "officer": login, "ticket": ticket, "service": None, "dossier": None,
        "scale": SCALES[centre], "score": score, "reasons": reasons, "input": "touch", "closed_at": closed,
        "rated_at": rated, "sent_at": rated, "boot_id": "b", "mono_ms": 1000 + seq})


def build_scenario(seed: int = 10) -> Scenario:
    rnd = random.Random(seed)
    sc = Scenario()
    seq: Counter[str] = Counter()
    numbers: Counter[tuple[str, int, str]] = Counter()  # (centre, day, queue prefix) -> last number issued
    for d in range(DAYS):
        day = FIRST + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for centre, officers in CENTRES.items():
            for ci, officer in enumerate(officers):
                counter = ("q1", "q2", "q3")[ci]
                login = officer
                if (officer, centre, d >= MOVER[2]) == (MOVER[0], MOVER[1], True):
                    counter, login = "q1", "o-lan"  # moved to q1; the terminal kept o-lan's login
                if centre == MOVER[1] and officer == "o-lan" and d >= MOVER[2]:
                    counter = "q3"  # o-lan took the freed counter
                device = f"d-{centre}-{counter}"
                sc.statuses.append(StatusSent(DeviceStatus.model_validate(
                    {"v": 1, "device": device, "centre": centre, "online": True, "outbox_depth": 0,
                     "uptime_s": 60, "version": "1.0", "at": ms(day.replace(hour=7, minute=50))}),
                    ms(day.replace(hour=7, minute=50))))
                t = day.replace(hour=8)
                for n in range(1, rnd.randint(4, 8)):
                    t += timedelta(minutes=rnd.randint(5, 40))
                    service = rnd.choice(SERVICES)
                    prefix = "A" if service == SERVICES[0] else "B"  # one queue per service, numbered per centre
                    numbers[(centre, d, prefix)] += 1
                    ticket = f"{prefix}{numbers[(centre, d, prefix)]:03d}"  # restarts every morning
                    vendor = f"v-{centre}-{d}-{ticket}" if centre in VENDOR_IDS else None
                    sc.closes.append(Close(centre, counter, officer, service, ticket, ms(t), vendor))
                    if n == 2:  # a recall: the same ticket closed again a minute later
                        sc.closes.append(Close(centre, counter, officer, service, ticket, ms(t) + 60_000, vendor))
                    if rnd.random() < 0.15:
                        continue  # served, not rated
                    score = _score(rnd, centre, counter, officer, d)
                    seq[device] += 1
                    event = _event(rnd, seq[device], device, centre, counter, login, ticket, score,
                                   _reasons(rnd, score, SCALES[centre]), ms(t), ms(t) + 8000)
                    sc.ratings.append(Published(event, officer, service, vendor))
                    if rnd.random() < 0.1:  # redelivery of the same message
                        sc.ratings.append(Published(event, officer, service, vendor))
                if rnd.random() < 0.4:  # a walk-up at the end of the day
                    seq[device] += 1
                    w = t + timedelta(minutes=3)
                    score = rnd.randint(1, SCALES[centre])
                    event = _event(rnd, seq[device], device, centre, counter, login, None, score,
                                   _reasons(rnd, score, SCALES[centre]), None, ms(w))
                    sc.ratings.append(Published(event, None, None))
                if rnd.random() < 0.5:  # the terminal switched off at night: its last will
                    at = ms(day.replace(hour=17, minute=30))
                    sc.statuses.append(StatusSent(DeviceStatus.model_validate(
                        {"v": 1, "device": device, "centre": centre, "online": False}), at))
    return sc
