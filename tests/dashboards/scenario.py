"""A realistic published scenario and its legal truth, computed without the ingest.

Two QMS centres in one province that share counter ids (q1, q2), 3 ISO weeks
(by default 2026-W45..W47; the MQTT test anchors them to the three weeks before
this one), one queue machine per centre numbering per service prefix (A = hộ tịch,
B = đất đai) and restarting at 001 every morning, recalls (a second close of the same
ticket, sometimes rated again), an officer moving counters mid-week while the terminal
keeps the predecessor's login (terminal/QMS disagreement), a counter-day at exactly
0 %, two officers tied on ratio, double presses, walk-ups (allowed at c-tt only) and
MQTT redeliveries of the same event.

What was *published* is kept (``closes``, ``ratings``, in the order they reached the
broker); the truth is computed from it by the legal rules of DESIGN.md: a ticket
instance is (centre, number, local service day), served once however often it is
closed; one rating per instance (the first to arrive; a redelivery of the same event
is the same rating); the officer and service are the QMS close's; walk-ups never count
for an officer and are refused where the centre does not allow them.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.contract import QmsEvent, RatingEvent, qms_topic, rating_topic, satisfaction_class
from ingest.lineproto import Point
from ingest.points import rating_point
from ingest.storage import Measurement, Tag

from .seed import TZ, ms

PROVINCE = "hue"
FIRST = datetime(2026, 11, 2, tzinfo=TZ)  # Monday of 2026-W45
DAYS = 19  # to Friday of the third week
CENTRES = {"c-tt": ("o-lan", "o-binh", "o-cuong"), "c-pd": ("o-dao", "o-em")}
WALKUPS = {"c-tt": True, "c-pd": False}  # c-pd accepts ticket-bound ratings only
PREFIX = {"ho-tich": "A", "dat-dai": "B"}  # one queue per service, numbers restart every morning
ZERO_DAY = ("c-tt", "q2", 9)  # every rating of that counter-day is "Không hài lòng"
MOVER = ("o-cuong", "c-tt", 10)  # from day 10 o-cuong serves at q1 while the terminal still says o-lan
RECALL_AFTER_MS = 60_000  # a recalled ticket is closed again a minute later
OFFICER_NAMES = {"o-lan": "Nguyễn Thị Lan", "o-binh": "Trần Văn Bình", "o-cuong": "Lê Văn Cường",
                 "o-dao": "Phạm Thị Đào", "o-em": "Hoàng Văn Em"}


@dataclass(frozen=True)
class Close:
    centre: str
    counter: str
    officer: str
    service: str
    ticket: str
    at_ms: int


@dataclass(frozen=True)
class Published:
    event: RatingEvent
    qms_officer: str | None  # the QMS close's officer (None: walk-up)
    service: str | None
    at_ms: int  # when it reached the broker (a redelivery later than the first copy)


@dataclass
class Scenario:
    first: datetime = FIRST
    closes: list[Close] = field(default_factory=list)
    ratings: list[Published] = field(default_factory=list)  # as published, redeliveries included

    # ------------------------------------------------------------------ the legal truth
    @staticmethod
    def day(at_ms: int) -> str:
        return datetime.fromtimestamp(at_ms / 1000, TZ).date().isoformat()

    def instances(self) -> dict[tuple[str, str, str], Close]:
        """Ticket instance (centre, number, service day) -> its first close (a recall is served once)."""
        out: dict[tuple[str, str, str], Close] = {}
        for c in sorted(self.closes, key=lambda c: c.at_ms):
            out.setdefault((c.centre, c.ticket, self.day(c.at_ms)), c)
        return out

    def outcomes(self) -> dict[str, str]:
        """event_id -> "rating" or the rejection reason, judging distinct events in arrival order."""
        out: dict[str, str] = {}
        rated: set[tuple[str, str, str]] = set()
        for p in sorted(self.ratings, key=lambda p: p.at_ms):
            e = p.event
            if e.event_id in out:
                continue  # a redelivery is the same rating
            if e.ticket is None:
                out[e.event_id] = "rating" if WALKUPS[e.centre] else "walkup_not_allowed"
                continue
            assert e.closed_at is not None
            key = (e.centre, e.ticket, self.day(e.closed_at))
            out[e.event_id] = "duplicate_ticket" if key in rated else "rating"
            rated.add(key)
        return out

    def counted(self) -> list[Published]:
        """The accepted ratings, once each (redeliveries collapsed); walk-ups kept (flagged)."""
        ok = {e for e, o in self.outcomes().items() if o == "rating"}
        out, seen = [], set()
        for p in sorted(self.ratings, key=lambda p: p.at_ms):
            if p.event.event_id in ok and p.event.event_id not in seen:
                seen.add(p.event.event_id)
                out.append(p)
        return out

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
                         service=c.service, at=c.at_ms)
            timed.append((c.at_ms, len(timed), qms_topic(c.centre, c.counter), q.to_json()))
        for p in self.ratings:
            timed.append((p.at_ms, len(timed), rating_topic(p.event.centre, p.event.device), p.event.to_json()))
        return [(topic, payload) for _, _, topic, payload in sorted(timed)]

    def points(self) -> list[Point]:
        """Points shaped as the ingest writes them (attributed officer, one per instance)."""
        out = []
        for p in self.counted():
            e = p.event
            if p.qms_officer is not None:
                e = e.model_copy(update={"officer": p.qms_officer, "service": p.service})
            out.append(rating_point(e, PROVINCE))
        for c in self.instances().values():
            tags = {Tag.PROVINCE: PROVINCE, Tag.CENTRE: c.centre, Tag.COUNTER: c.counter, Tag.OFFICER: c.officer,
                    Tag.SERVICE: c.service}
            out.append(Point(Measurement.TICKET, tags, {"ticket": c.ticket, "serve_s": 60.0}, c.at_ms * 1_000_000))
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


def build_scenario(seed: int = 10, first: datetime = FIRST) -> Scenario:
    """``first`` must be a Monday 00:00 in TZ; the scenario covers ``DAYS`` days (weekdays only)."""
    assert first.weekday() == 0 and first.tzinfo is not None, first
    rnd = random.Random(seed)
    sc = Scenario(first)
    seq: Counter[str] = Counter()

    def event(device: str, centre: str, counter: str, login: str, ticket: str | None, score: int,
              closed: int | None, rated: int) -> RatingEvent:
        seq[device] += 1
        return RatingEvent.model_validate({
            "v": 1, "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "seq": seq[device], "device": device, "centre": centre, "counter": counter,
            "officer": login, "ticket": ticket, "service": None, "dossier": None, "scale": 4,
            "score": score, "reasons": ("thoi_gian_cho",) if score == 1 else (), "input": "touch",
            "closed_at": closed, "rated_at": rated, "sent_at": rated, "boot_id": "b",
            "mono_ms": 1000 + seq[device]})

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
                zero = (centre, counter, d) == ZERO_DAY
                t = day.replace(hour=8)
                for n in range(1, rnd.randint(4, 8)):
                    t += timedelta(minutes=rnd.randint(5, 40))
                    score = 1 if zero else 4 if centre == "c-pd" else rnd.choice((4, 4, 3, 3, 2, 1))
                    visits.append(_Visit(
                        t, counter, officer, login, rnd.choice(("ho-tich", "dat-dai")), recall=n == 2,
                        rated=rnd.random() >= 0.15, score=score, double_press=rnd.random() < 0.08,
                        rerated_after_recall=n == 2 and rnd.random() < 0.5, redelivered=rnd.random() < 0.1))
                if rnd.random() < 0.4:  # a walk-up at the end of the day
                    walkups.append((t + timedelta(minutes=3), counter, login))
            numbers: Counter[str] = Counter()
            for v in sorted(visits, key=lambda v: (v.at, v.counter)):  # the queue machine numbers in call order
                numbers[v.service] += 1
                ticket = f"{PREFIX[v.service]}{numbers[v.service]:03d}"
                device, closed = f"d-{centre}-{v.counter}", ms(v.at)
                sc.closes.append(Close(centre, v.counter, v.officer, v.service, ticket, closed))
                if v.recall:
                    sc.closes.append(Close(centre, v.counter, v.officer, v.service, ticket, closed + RECALL_AFTER_MS))
                if v.rated:
                    e = event(device, centre, v.counter, v.login, ticket, v.score, closed, closed + 8000)
                    sc.ratings.append(Published(e, v.officer, v.service, e.sent_at))
                    if v.redelivered:  # the same message again (no PUBACK seen by the terminal)
                        sc.ratings.append(Published(e, v.officer, v.service, e.sent_at + 2000))
                    if v.double_press:  # a second press for the same ticket: a new event, refused
                        e2 = event(device, centre, v.counter, v.login, ticket, rnd.randint(1, 4), closed,
                                   closed + 11_000)
                        sc.ratings.append(Published(e2, v.officer, v.service, e2.sent_at))
                if v.rerated_after_recall:  # the terminal prompts again after the recall's close
                    recalled = closed + RECALL_AFTER_MS
                    e = event(device, centre, v.counter, v.login, ticket, v.score, recalled, recalled + 5000)
                    sc.ratings.append(Published(e, v.officer, v.service, e.sent_at))
            for at, counter, login in walkups:
                e = event(f"d-{centre}-{counter}", centre, counter, login, None, rnd.randint(1, 4), None, ms(at))
                sc.ratings.append(Published(e, None, None, e.sent_at))
    return sc
