"""A realistic published scenario and its legal truth, computed without the ingest.

Three centres in two provinces; c-tt and c-pd (province hue) share counter ids
(q1..q3), c-hl (province qt) rates on a 5-level scale, its queue numbers wrap within
the day and its QMS sends vendor ticket ids (the terminal at q1 repeats them in its
ratings, the one at q2 sends only the number). 3 ISO weeks (by default 2026-W45..W47;
the MQTT test anchors them to the three weeks before this one), one queue machine per
centre numbering in call order per queue prefix (A: ho-tich, B: dat-dai) and restarting
at A001/B001 every morning, recalls (a second close of the same ticket, sometimes rated
again), an officer moving counters mid-week while the terminal keeps the predecessor's
login (terminal/QMS disagreement), a counter-day at exactly 0 %, two officers tied at
100 % next to a third (ranks 1, 1, 3), reasons given with "Không hài lòng" and with
"Bình thường" ratings, double presses, walk-ups (refused at c-pd), MQTT redeliveries of
the same event and device status messages.

What was *published* is kept (``closes``, ``ratings`` with the time each reached the
broker, ``statuses``); the truth is computed from it by the legal rules of DESIGN.md: a
ticket instance is (centre, number, local service day) or the vendor's ticket id, served
once however often it is closed; one rating per instance (the first to arrive; a
redelivery of the same event is the same rating, a second press or a re-rating after a
recall is ``duplicate_ticket``); the officer and service are the QMS close's; walk-ups
never count for an officer and are ``walkup_not_allowed`` where the centre does not
accept them. :meth:`Scenario.points` writes what the ingest stores for it (its own point
builders), :meth:`Scenario.messages` what a broker received.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.contract import DeviceStatus, QmsEvent, RatingEvent, qms_topic, rating_topic, satisfaction_class
from ingest.points import rating_point, rejected_point, status_point, ticket_point
from ingest.tickets import Close as IndexClose
from storage.lineproto import Point

from .seed import TZ, ms

PROVINCES = {"c-tt": "hue", "c-pd": "hue", "c-hl": "qt"}
SCALES = {"c-tt": 4, "c-pd": 4, "c-hl": 5}
WALKUPS = {"c-tt": True, "c-pd": False, "c-hl": True}  # c-pd accepts ticket-bound ratings only
FIRST = datetime(2026, 11, 2, tzinfo=TZ)  # Monday of 2026-W45
DAYS = 19  # to Friday of the third week
CENTRES = {"c-tt": ("o-lan", "o-binh", "o-cuong"), "c-pd": ("o-dao", "o-em", "o-gia"), "c-hl": ("o-hoa", "o-khai")}
OFFICER_NAMES = {"o-lan": "Nguyễn Thị Lan", "o-binh": "Trần Văn Bình", "o-cuong": "Lê Văn Cường",
                 "o-dao": "Phạm Thị Đào", "o-em": "Hoàng Văn Em", "o-gia": "Võ Thị Gia", "o-hoa": "Đặng Thị Hoa",
                 "o-khai": "Bùi Văn Khải"}
PERFECT = ("o-dao", "o-em")  # always the top score: tied at 100 %
VENDOR_IDS = ("c-hl",)  # QMS sends a vendor ticket id
WRAP = {"c-hl": 4}  # that queue machine's numbers wrap (A001..A004, A001, ...): only the vendor id tells them apart
FORWARDS_VENDOR_ID = ("d-c-hl-q1",)  # terminals that repeat it in their ratings (the others send only the number)
ZERO_DAY = ("c-tt", "q2", 9)  # every rating of that counter-day is "Không hài lòng"
MOVER = ("o-cuong", "c-tt", 10)  # from day 10 o-cuong serves at q1 while the terminal still says o-lan
PREFIX = {"ho-tich": "A", "dat-dai": "B"}  # one queue per service, numbers restart every morning
SERVICES = tuple(PREFIX)
LOW_REASONS = ("thoi_gian_cho", "thai_do", "thu_tuc", "huong_dan")
RECALL_AFTER_MS = 60_000  # a recalled ticket is closed again a minute later
REFUSED = ("duplicate_ticket", "walkup_not_allowed")  # the reasons the scenario's events may be refused for


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
    at_ms: int  # when it reached the broker (a redelivery later than the first copy)
    ticket_id: str | None = None  # the vendor ticket id of the QMS close (the terminal may not repeat it)


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
    response_ms: int | None  # rated - the close it answers (ticket-bound ratings)
    terminal_officer: str  # the terminal's officer where it differs from the QMS's, else ""


@dataclass(frozen=True)
class LegalServed:
    time_ns: int
    province: str
    centre: str
    counter: str
    officer: str
    service: str


@dataclass(frozen=True)
class Refused:
    """A published event the rules refuse, with its reason, at its first arrival."""

    published: Published
    reason: str
    centre: str
    counter: str
    device: str
    at_ms: int


def service_day(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, TZ).date().isoformat()


def instance_key(centre: str, ticket: str, closed_at_ms: int, ticket_id: str | None) -> tuple[str, ...]:
    return (centre, ticket_id) if ticket_id else (centre, ticket, service_day(closed_at_ms))


def _ticket_point(c: Close) -> Point:
    """The ingest's own ticket point of a first close (its time carries a ticket-derived ns offset)."""
    return ticket_point(PROVINCES[c.centre], c.centre, IndexClose(c.counter, c.officer, c.service, c.at_ms),
                        c.ticket, c.ticket_id, None, 60.0)


@dataclass
class Scenario:
    first: datetime = FIRST
    closes: list[Close] = field(default_factory=list)
    ratings: list[Published] = field(default_factory=list)  # as published, redeliveries included
    statuses: list[StatusSent] = field(default_factory=list)

    # ------------------------------------------------------------------ the legal truth
    def instances(self) -> dict[tuple[str, ...], Close]:
        """Ticket instance -> its first close (a recall is served once)."""
        out: dict[tuple[str, ...], Close] = {}
        for c in sorted(self.closes, key=lambda c: c.at_ms):
            out.setdefault(instance_key(c.centre, c.ticket, c.at_ms, c.ticket_id), c)
        return out

    def arrivals(self) -> list[Published]:
        return sorted(self.ratings, key=lambda p: p.at_ms)

    def outcomes(self) -> dict[str, str]:
        """event_id -> "rating" or the rejection reason, judging distinct events in arrival order."""
        out: dict[str, str] = {}
        rated: set[tuple[str, ...]] = set()
        for p in self.arrivals():
            e = p.event
            if e.event_id in out:
                continue  # a redelivery is the same rating
            if e.ticket is None:
                out[e.event_id] = "rating" if WALKUPS[e.centre] else "walkup_not_allowed"
                continue
            assert e.closed_at is not None
            key = instance_key(e.centre, e.ticket, e.closed_at, p.ticket_id)  # the close it answers
            out[e.event_id] = "duplicate_ticket" if key in rated else "rating"
            rated.add(key)
        return out

    def counted(self) -> list[Published]:
        """The accepted ratings, once each (redeliveries collapsed), in arrival order; walk-ups kept (flagged)."""
        ok = {e for e, o in self.outcomes().items() if o == "rating"}
        out, seen = [], set()
        for p in self.arrivals():
            if p.event.event_id in ok and p.event.event_id not in seen:
                seen.add(p.event.event_id)
                out.append(p)
        return out

    def refused(self) -> list[Refused]:
        """Each refused event once (its first arrival; a redelivery of a refused event is judged alike)."""
        outcomes, out, seen = self.outcomes(), [], set()
        for p in self.arrivals():
            e = p.event
            if outcomes[e.event_id] != "rating" and e.event_id not in seen:
                seen.add(e.event_id)
                out.append(Refused(p, outcomes[e.event_id], e.centre, e.counter, e.device, p.at_ms))
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
        return [LegalServed(_ticket_point(c).time_ns, PROVINCES[c.centre], c.centre, c.counter, c.officer,
                            c.service) for c in self.instances().values()]

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

    # ------------------------------------------------------------------ publishing and seeding
    def messages(self) -> list[tuple[str, bytes]]:
        """Every QMS close and rating as published over MQTT, in the order they reached the broker."""
        timed: list[tuple[int, int, str, bytes]] = []
        for c in self.closes:
            q = QmsEvent(v=1, type="ticket_closed", counter=c.counter, officer=c.officer, ticket=c.ticket,
                         service=c.service, at=c.at_ms, ticket_id=c.ticket_id)
            timed.append((c.at_ms, len(timed), qms_topic(c.centre, c.counter), q.to_json()))
        for p in self.ratings:
            timed.append((p.at_ms, len(timed), rating_topic(p.event.centre, p.event.device), p.event.to_json()))
        return [(topic, payload) for _, _, topic, payload in sorted(timed)]

    def points(self) -> list[Point]:
        """Points shaped as the ingest writes them (attributed officer, one ticket per instance, rejections)."""
        out = []
        for p in self.counted():
            e = p.event
            if p.qms_officer is None:  # a walk-up: the terminal's (registered) officer, no close
                out.append(rating_point(e, PROVINCES[e.centre]))
                continue
            terminal = e.officer if e.officer != p.qms_officer else None
            out.append(rating_point(e, PROVINCES[e.centre], officer=p.qms_officer, service=p.service,
                                    terminal_officer=terminal, ticket_id=p.ticket_id, bound_close_ms=e.closed_at))
        out += [_ticket_point(c) for c in self.instances().values()]
        for r in self.refused():  # stamped at arrival (ms; the ingest makes the ns unique)
            out.append(rejected_point(r.reason, r.centre, rating_topic(r.centre, r.device), r.device,
                                      r.published.event.to_json(), r.reason, r.at_ms * 1_000_000, counter=r.counter))
        out += [status_point(st.status, st.at_ms) for st in self.statuses]
        return out


@dataclass(frozen=True)
class _Visit:
    """One citizen served at a counter (numbered later, centre-wide per service prefix)."""

    at: datetime
    counter: str
    officer: str
    login: str  # the officer the terminal believes is logged in
    service: str
    recall: bool
    rated: bool
    score: int
    double_press: bool
    rerated_after_recall: bool
    redelivered: bool


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


def build_scenario(seed: int = 10, first: datetime = FIRST) -> Scenario:
    """``first`` must be a Monday 00:00 in TZ; the scenario covers ``DAYS`` days (weekdays only)."""
    assert first.weekday() == 0 and first.tzinfo is not None and first.hour == 0, first
    rnd = random.Random(seed)
    sc = Scenario(first)
    seq: Counter[str] = Counter()

    def event(device: str, centre: str, counter: str, login: str, ticket: str | None, ticket_id: str | None,
              score: int, closed: int | None, rated: int) -> RatingEvent:
        seq[device] += 1
        return RatingEvent.model_validate({
            "v": 1, "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "seq": seq[device],
            "device": device, "centre": centre, "counter": counter, "officer": login, "ticket": ticket,
            "ticket_id": ticket_id, "service": None, "dossier": None, "scale": SCALES[centre], "score": score,
            "reasons": _reasons(rnd, score, SCALES[centre]), "input": "touch", "closed_at": closed,
            "rated_at": rated, "sent_at": rated, "boot_id": "b", "mono_ms": 1000 + seq[device]})

    def status(device: str, centre: str, at: datetime, online: bool) -> None:
        body = {"v": 1, "device": device, "centre": centre, "online": online}
        if online:
            body |= {"outbox_depth": 0, "uptime_s": 60, "version": "1.0", "at": ms(at)}
        sc.statuses.append(StatusSent(DeviceStatus.model_validate(body), ms(at)))

    for d in range(DAYS):
        day = first + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for centre, officers in CENTRES.items():
            visits: list[_Visit] = []
            walkups: list[tuple[datetime, str, str]] = []
            for ci, officer in enumerate(officers):
                counter, login = ("q1", "q2", "q3")[ci], officer
                if (officer, centre, d >= MOVER[2]) == (MOVER[0], MOVER[1], True):
                    counter, login = "q1", "o-lan"  # moved to q1; the terminal kept o-lan's login
                if centre == MOVER[1] and officer == "o-lan" and d >= MOVER[2]:
                    counter = "q3"  # o-lan took the freed counter
                status(f"d-{centre}-{counter}", centre, day.replace(hour=7, minute=50), True)
                t = day.replace(hour=8)
                for n in range(1, rnd.randint(4, 8)):
                    t += timedelta(minutes=rnd.randint(5, 40))
                    visits.append(_Visit(
                        t, counter, officer, login, rnd.choice(SERVICES), recall=n == 2, rated=rnd.random() >= 0.15,
                        score=_score(rnd, centre, counter, officer, d), double_press=rnd.random() < 0.08,
                        rerated_after_recall=n == 2 and rnd.random() < 0.5, redelivered=rnd.random() < 0.1))
                if rnd.random() < 0.4:  # a walk-up at the end of the day
                    walkups.append((t + timedelta(minutes=3), counter, login))
                if rnd.random() < 0.5:  # the terminal switched off at night: its last will
                    status(f"d-{centre}-{counter}", centre, day.replace(hour=17, minute=30), False)
            numbers: Counter[str] = Counter()
            for i, v in enumerate(sorted(visits, key=lambda v: (v.at, v.counter))):  # numbered in call order
                numbers[v.service] += 1
                ticket = f"{PREFIX[v.service]}{(numbers[v.service] - 1) % WRAP.get(centre, 1000) + 1:03d}"
                vendor = f"v-{centre}-{day:%Y%m%d}-{i:04d}" if centre in VENDOR_IDS else None
                device, closed = f"d-{centre}-{v.counter}", ms(v.at)
                sc.closes.append(Close(centre, v.counter, v.officer, v.service, ticket, closed, vendor))
                if v.recall:
                    sc.closes.append(Close(centre, v.counter, v.officer, v.service, ticket, closed + RECALL_AFTER_MS,
                                           vendor))
                sent = vendor if device in FORWARDS_VENDOR_ID else None
                if v.rated:
                    e = event(device, centre, v.counter, v.login, ticket, sent, v.score, closed, closed + 8000)
                    sc.ratings.append(Published(e, v.officer, v.service, e.sent_at, vendor))
                    if v.redelivered:  # the same message again (no PUBACK seen by the terminal)
                        sc.ratings.append(Published(e, v.officer, v.service, e.sent_at + 2000, vendor))
                    if v.double_press:  # a second press for the same ticket: a new event, refused
                        e2 = event(device, centre, v.counter, v.login, ticket, sent,
                                   rnd.randint(1, SCALES[centre]), closed, closed + 11_000)
                        sc.ratings.append(Published(e2, v.officer, v.service, e2.sent_at, vendor))
                if v.rerated_after_recall:  # the terminal prompts again after the recall's close
                    recalled = closed + RECALL_AFTER_MS
                    e = event(device, centre, v.counter, v.login, ticket, sent, v.score, recalled, recalled + 5000)
                    sc.ratings.append(Published(e, v.officer, v.service, e.sent_at, vendor))
            for at, counter, login in walkups:
                score = rnd.randint(1, SCALES[centre])
                e = event(f"d-{centre}-{counter}", centre, counter, login, None, None, score, None, ms(at))
                sc.ratings.append(Published(e, None, None, e.sent_at))
    return sc
