"""A known dataset for the dashboard, alert and report tests, and the truth computed from it.

Four ISO weeks (2026-W44..W47) at three centres in two provinces: tickets,
ratings (scales 4 and 5, walk-ups, ratings < 1 s after close, a long run of top
scores), an officer under the minimum sample, rejections and device statuses.
Points are made by the ingest's own point builders, so the schema is the real one.
The expected numbers are computed here in plain Python, never through InfluxDB.
"""

from __future__ import annotations

import json
import random
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from broker.contract import QMS_BRIDGE_DEVICE, DeviceStatus, RatingEvent, satisfaction_class
from ingest.points import rating_point, rejected_point, status_point
from storage.lineproto import Point

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FIRST_MONDAY = datetime(2026, 10, 26, tzinfo=TZ)  # 2026-W44
WEEKS = 4
NOW = datetime(2026, 11, 20, 20, 0, tzinfo=TZ)  # Friday evening of 2026-W47, the tests' "now"
REASONS = ("thai_do", "thoi_gian_cho", "huong_dan", "thu_tuc", "di_lai", "co_so_vat_chat")
CENTRES = {  # centre -> (province, scale, officers)
    "c-ba": ("hn", 4, ("o-an", "o-binh", "o-chi")),
    "c-hk": ("hn", 4, ("o-dung", "o-em")),
    "c-lc": ("hp", 5, ("o-giang", "o-ha", "o-khanh")),
}
NEW_OFFICER = "o-moi"  # few ratings: below the minimum sample
RUN_COUNTER = ("c-hk", "q2")
OFFLINE_DEVICE = "d-c-hk-q3"


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass(frozen=True)
class Rating:
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
    dossier: str | None
    reasons: tuple[str, ...]
    response_ms: int | None

    def tag(self, key: str) -> str:
        return str(getattr(self, key))


@dataclass(frozen=True)
class Ticket:
    time_ns: int
    province: str
    centre: str
    counter: str
    officer: str
    service: str
    ticket: str

    def tag(self, key: str) -> str:
        return str(getattr(self, key))


@dataclass(frozen=True)
class Status:
    time_ns: int
    centre: str
    device: str
    online: bool
    outbox_depth: int
    version: str
    uptime_s: int
    state: str = ""


@dataclass(frozen=True)
class Rejection:
    time_ns: int
    centre: str
    reason: str
    device: str
    counter: str | None
    province: str = ""
    officer: str = ""
    service: str = ""

    def tag(self, key: str) -> str:
        return str(getattr(self, key) or "")


@dataclass
class Seed:
    ratings: list[Rating] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)


Selection = dict[str, list[str] | None]


def selected(item: Rating | Ticket, sel: Selection) -> bool:
    """Template variable semantics: None (All) matches anything, also a missing tag."""
    return all(not (values is not None and item.tag(key) not in values) for key, values in sel.items())


def in_range(t_ns: int, start_ms: int, end_ms: int) -> bool:
    return start_ms * 1_000_000 <= t_ns <= end_ms * 1_000_000


class _Builder:
    def __init__(self) -> None:
        self.rnd = random.Random(6)
        self.seed = Seed()
        self.seq: dict[str, int] = {}
        self.ticket_no = 0

    def rating(self, centre: str, counter: str, officer: str, service: str, closed: datetime | None,
               rated: datetime, score: int) -> None:
        province, scale, _ = CENTRES[centre]
        device = f"d-{centre}-{counter}"
        seq = self.seq[device] = self.seq.get(device, 0) + 1
        ticket = None
        dossier = None
        if closed is not None:
            self.ticket_no += 1
            ticket = f"A-{self.ticket_no}"
            dossier = f"HS{self.ticket_no:06d}"
        cls = satisfaction_class(score, scale).value
        reasons = tuple(self.rnd.sample(REASONS, self.rnd.randint(1, 2))) if cls == "not_satisfied" else ()
        if cls == "satisfied" and self.rnd.random() < 0.2:
            reasons = (self.rnd.choice(REASONS),)
        event = RatingEvent.model_validate({
            "v": 1, "event_id": str(uuid.UUID(int=self.rnd.getrandbits(128), version=4)), "seq": seq,
            "device": device, "centre": centre, "counter": counter, "officer": officer, "ticket": ticket,
            "service": service or None, "dossier": dossier, "scale": scale, "score": score, "reasons": reasons,
            "input": "touch", "closed_at": ms(closed) if closed else None, "rated_at": ms(rated),
            "sent_at": ms(rated), "boot_id": "b1", "mono_ms": 1000 + seq})
        point = rating_point(event, province)
        self.seed.points.append(point)
        self.seed.ratings.append(Rating(
            point.time_ns, province, centre, counter, officer, service, device, score, scale, cls,
            ticket is None, ticket, dossier, reasons, ms(rated) - ms(closed) if closed else None))
        if closed is not None and ticket is not None:
            self.ticket(centre, counter, officer, service, closed, ticket)

    def ticket(self, centre: str, counter: str, officer: str, service: str, closed: datetime,
               ticket: str | None = None) -> None:
        province = CENTRES[centre][0]
        if ticket is None:
            self.ticket_no += 1
            ticket = f"A-{self.ticket_no}"
        tags = {"province": province, "centre": centre, "counter": counter, "officer": officer, "service": service}
        self.seed.points.append(Point("ticket", tags, {"ticket": ticket, "serve_s": 120.0}, ms(closed) * 1_000_000))
        self.seed.tickets.append(Ticket(ms(closed) * 1_000_000, province, centre, counter, officer, service, ticket))

    def score_for(self, officer: str, scale: int) -> int:
        quality = {"o-an": 0.9, "o-binh": 0.75, "o-chi": 0.6}.get(officer, 0.8)
        r = self.rnd.random()
        if r < quality * 0.6:
            return scale
        if r < quality:
            return scale - 1 if scale == 4 else self.rnd.choice((3, 4))
        return 1 if scale == 4 else self.rnd.choice((1, 2))

    def day(self, day: datetime) -> None:
        for centre, (_, scale, officers) in CENTRES.items():
            for ci, counter in enumerate(("q1", "q2", "q3")):
                officer = officers[(ci + day.toordinal()) % len(officers)]
                t = day.replace(hour=8)
                for _ in range(self.rnd.randint(2, 6)):
                    t += timedelta(minutes=self.rnd.randint(10, 70), seconds=self.rnd.randint(0, 59))
                    service = self.rnd.choice(("ho-tich", "dat-dai", ""))
                    if self.rnd.random() < 0.2:  # served but not rated
                        self.ticket(centre, counter, officer, service, t)
                        continue
                    delay = self.rnd.randint(200, 900) if self.rnd.random() < 0.1 else self.rnd.randint(1500, 40000)
                    self.rating(centre, counter, officer, service, t, t + timedelta(milliseconds=delay),
                                self.score_for(officer, scale))
                if self.rnd.random() < 0.3:  # walk-up: no ticket, never in an officer's score
                    w = t + timedelta(minutes=5)
                    self.rating(centre, counter, officer, "", None, w, self.rnd.randint(1, scale))

    def specials(self) -> None:
        thursday = FIRST_MONDAY + timedelta(days=7 * 3 + 3)
        centre, counter = RUN_COUNTER
        t = thursday.replace(hour=17)
        for _ in range(20):  # an unbroken run of 20 top scores
            t += timedelta(minutes=1)
            self.rating(centre, counter, "o-em", "ho-tich", t, t + timedelta(seconds=3), 4)
        t = thursday.replace(hour=17)
        for i in range(8):  # the new officer: 8 rated tickets only
            t += timedelta(minutes=3)
            self.rating("c-ba", "q3", NEW_OFFICER, "dat-dai", t, t + timedelta(seconds=5), 4 if i % 4 else 1)
        bad = [("c-ba", "duplicate_ticket", "q1")] * 3 + [("c-ba", "unknown_ticket", "q2")] * 2 + [
            ("c-hk", "unknown_ticket", "q3"), ("c-ba", "unknown_ticket", None), ("", "bad_topic", None)]
        for i, (c, reason, q) in enumerate(bad):
            device = f"d-{c}-{q}" if q else "d-x"
            payload = json.dumps({"counter": q, "device": device}).encode() if q else b"{not json"
            at = ms(thursday.replace(hour=11)) * 1_000_000 + i
            # the `rejected` tags: counter and device, plus what the registry (province) and payload tell
            province, officer = (CENTRES[c][0], CENTRES[c][2][0]) if c in CENTRES and q else ("", "")
            service = "ho-tich" if q else ""
            self.seed.points.append(rejected_point(reason, c, "hl/v1/x/y/rating", device, payload, "test", at,
                                                   counter=q or "", province=province, officer=officer,
                                                   service=service))
            self.seed.rejections.append(Rejection(at, c or "unknown", reason, device, q, province, officer, service))

    def statuses(self) -> None:
        for d in range(WEEKS * 7):
            day = FIRST_MONDAY + timedelta(days=d)
            for centre in CENTRES:
                for q in ("q1", "q2", "q3"):
                    device = f"d-{centre}-{q}"
                    for hour in (7, 17):
                        at = day.replace(hour=hour, minute=45)
                        if at > NOW:
                            continue
                        online = not (device == OFFLINE_DEVICE and at > NOW - timedelta(hours=6))
                        st = DeviceStatus.model_validate({
                            "v": 1, "device": device, "centre": centre, "online": online,
                            "outbox_depth": self.rnd.randint(0, 9), "uptime_s": d * 86400 + hour * 3600,
                            "version": "0.2.0" if q == "q1" else "0.1.0"})
                        p = status_point(st, ms(at))
                        self.seed.points.append(p)
                        self.seed.statuses.append(Status(p.time_ns, centre, device, online, st.outbox_depth,
                                                         st.version, st.uptime_s))
        # the offline device's last will, written after its last online status
        lwt = DeviceStatus.model_validate({"v": 1, "device": OFFLINE_DEVICE, "centre": "c-hk", "online": False,
                                           "uptime_s": 0, "outbox_depth": 0, "version": ""})
        at = NOW - timedelta(hours=5)
        p = status_point(lwt, ms(at))
        self.seed.points.append(p)
        self.seed.statuses.append(Status(p.time_ns, "c-hk", OFFLINE_DEVICE, False, 0, "", 0))
        # QMS bridges (stored by the ingest as device "qms-bridge"): c-ba's reports ok every hour of the
        # last 3 days; c-hk's lost its database two days ago and went offline (last will) yesterday
        for centre, hours, states in (("c-ba", range(72), ("ok",)),
                                      ("c-hk", range(24, 60), ("database_unreachable", "offline"))):
            for h in hours:
                at = NOW - timedelta(hours=h)
                state = states[0] if h >= 30 or len(states) == 1 else states[1]
                bridge = DeviceStatus.model_validate({"v": 1, "device": QMS_BRIDGE_DEVICE, "centre": centre,
                                                      "online": state != "offline", "uptime_s": 3600 * (72 - h),
                                                      "version": "0.3.0", "state": state})
                p = status_point(bridge, ms(at))
                self.seed.points.append(p)
                self.seed.statuses.append(Status(p.time_ns, centre, QMS_BRIDGE_DEVICE, bridge.online, 0, "0.3.0",
                                                 bridge.uptime_s, state))


def build_seed() -> Seed:
    b = _Builder()
    for d in range(WEEKS * 7):
        day = FIRST_MONDAY + timedelta(days=d)
        if day.weekday() < 5 and day.date() <= NOW.date():
            b.day(day)
    b.specials()
    b.statuses()
    return b.seed


def write_points(url: str, database: str, points: Iterable[Point], batch: int = 5000) -> None:
    lines = [p.to_line() for p in points]
    for i in range(0, len(lines), batch):
        body = "\n".join(lines[i:i + batch]).encode()
        req = urllib.request.Request(f"{url}/write?db={database}&precision=ns", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 204
