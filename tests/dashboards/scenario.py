"""A realistic published scenario and its legal truth, computed without the ingest.

Two centres in one province that share counter ids (q1, q2), 3 ISO weeks
(2026-W45..W47), ticket numbers restarting at A001 every morning, recalls (a second
close of the same ticket), an officer moving counters mid-week while the terminal
keeps the predecessor's login (terminal/QMS disagreement), a counter-day at exactly
0 %, two officers tied on ratio, walk-ups and MQTT redeliveries of the same event.

What was *published* is kept (``closes``, ``ratings``); the truth is computed from it
by the legal rules: a ticket instance is (centre, counter, number, local service day),
served once however often it is closed; one rating per instance (the first, by event id);
the officer and service are the QMS close's; walk-ups never count for an officer.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.contract import RatingEvent, satisfaction_class
from ingest.lineproto import Point
from ingest.points import rating_point
from ingest.storage import Measurement, Tag

from .seed import TZ, ms

PROVINCE = "hue"
FIRST = datetime(2026, 11, 2, tzinfo=TZ)  # Monday of 2026-W45
DAYS = 19  # to Friday of W47
CENTRES = {"c-tt": ("o-lan", "o-binh", "o-cuong"), "c-pd": ("o-dao", "o-em")}
ZERO_DAY = ("c-tt", "q2", 9)  # every rating of that counter-day is "Không hài lòng"
MOVER = ("o-cuong", "c-tt", 10)  # from day 10 o-cuong serves at q1 while the terminal still says o-lan


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


@dataclass
class Scenario:
    closes: list[Close] = field(default_factory=list)
    ratings: list[Published] = field(default_factory=list)  # as published, redeliveries included

    # ------------------------------------------------------------------ the legal truth
    def instances(self) -> dict[tuple[str, str, str, str], Close]:
        """Ticket instance -> its first close (a recall is served once)."""
        out: dict[tuple[str, str, str, str], Close] = {}
        for c in sorted(self.closes, key=lambda c: c.at_ms):
            day = datetime.fromtimestamp(c.at_ms / 1000, TZ).date().isoformat()
            out.setdefault((c.centre, c.counter, c.ticket, day), c)
        return out

    def counted(self) -> list[Published]:
        """One rating per ticket instance, redeliveries collapsed; walk-ups kept (flagged)."""
        seen_events: set[str] = set()
        seen_tickets: set[tuple[str, str, str, str]] = set()
        out = []
        for p in sorted(self.ratings, key=lambda p: p.event.rated_at):
            e = p.event
            if e.event_id in seen_events:
                continue
            seen_events.add(e.event_id)
            if e.ticket is not None:
                day = datetime.fromtimestamp(e.rated_at / 1000, TZ).date().isoformat()
                key = (e.centre, e.counter, e.ticket, day)
                if key in seen_tickets:
                    continue
                seen_tickets.add(key)
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

    # ------------------------------------------------------------------ seeding
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


def build_scenario(seed: int = 10) -> Scenario:
    rnd = random.Random(seed)
    sc = Scenario()
    seq: Counter[str] = Counter()
    for d in range(DAYS):
        day = FIRST + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for centre, officers in CENTRES.items():
            for ci, counter in enumerate(("q1", "q2", "q3")[:len(officers)]):
                officer = officers[ci]
                login = officer
                if (officer, centre, d >= MOVER[2]) == (MOVER[0], MOVER[1], True):
                    counter, login = "q1", "o-lan"  # moved to q1; the terminal kept o-lan's login
                if centre == MOVER[1] and officer == "o-lan" and d >= MOVER[2]:
                    counter = "q3"  # o-lan took the freed counter
                device = f"d-{centre}-{counter}"
                t = day.replace(hour=8)
                for n in range(1, rnd.randint(4, 8)):
                    t += timedelta(minutes=rnd.randint(5, 40))
                    ticket = f"A{n:03d}"  # restarts every morning
                    service = rnd.choice(("ho-tich", "dat-dai"))
                    sc.closes.append(Close(centre, counter, officer, service, ticket, ms(t)))
                    if n == 2:  # a recall: the same ticket closed again a minute later
                        sc.closes.append(Close(centre, counter, officer, service, ticket, ms(t) + 60_000))
                    if rnd.random() < 0.15:
                        continue  # served, not rated
                    zero = (centre, counter, d) == ZERO_DAY
                    score = 1 if zero else 4 if centre == "c-pd" else rnd.choice((4, 4, 3, 3, 2, 1))
                    seq[device] += 1
                    event = RatingEvent.model_validate({
                        "v": 1, "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                        "seq": seq[device], "device": device, "centre": centre, "counter": counter,
                        "officer": login, "ticket": ticket, "service": None, "dossier": None, "scale": 4,
                        "score": score, "reasons": ("thoi_gian_cho",) if score == 1 else (), "input": "touch",
                        "closed_at": ms(t), "rated_at": ms(t) + 8000, "sent_at": ms(t) + 8000, "boot_id": "b",
                        "mono_ms": 1000 + seq[device]})
                    sc.ratings.append(Published(event, officer, service))
                    if rnd.random() < 0.1:  # redelivery of the same message
                        sc.ratings.append(Published(event, officer, service))
                if rnd.random() < 0.4:  # a walk-up at the end of the day
                    seq[device] += 1
                    w = t + timedelta(minutes=3)
                    event = RatingEvent.model_validate({
                        "v": 1, "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
                        "seq": seq[device], "device": device, "centre": centre, "counter": counter,
                        "officer": login, "ticket": None, "service": None, "dossier": None, "scale": 4,
                        "score": rnd.randint(1, 4), "reasons": (), "input": "touch", "closed_at": None,
                        "rated_at": ms(w), "sent_at": ms(w), "boot_id": "b", "mono_ms": 1000 + seq[device]})
                    sc.ratings.append(Published(event, None, None))
    return sc
