"""Simulated counters: a queue system and rating terminals, for the demo and load tests.

Each simulated counter logs an officer in, then for every citizen calls a
ticket, closes it, and publishes the citizen's rating a moment later, exactly
as a real QMS adapter and terminal would. Scores follow a plausible
distribution (most citizens satisfied, a few not).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

from broker.contract import QmsEvent, RatingEvent, new_event_id, qms_topic
from broker.mqtt.session import wait_acknowledged
from broker.mqtt.settings import MqttSettings

from .publisher import RatingPublisher

REASONS = ("thai_do", "thoi_gian_cho", "huong_dan", "thu_tuc", "di_lai", "co_so_vat_chat")
SERVICES = ("ho-tich", "dat-dai", "xay-dung", "kinh-doanh")


@dataclass(frozen=True)
class SimCounter:
    centre: str
    counter: str
    device: str
    officer: str
    service: str


def plan_counters(centres: list[str], counters_per_centre: int) -> list[SimCounter]:
    out = []
    for c in centres:
        for i in range(1, counters_per_centre + 1):
            out.append(SimCounter(c, f"q{i:02d}", f"{c}-t{i:02d}", f"{c}-cb{i:02d}", SERVICES[i % len(SERVICES)]))
    return out


def make_rating(counter: SimCounter, seq: int, ticket: str | None, closed_at: int | None, rng: random.Random,
                scale: Literal[3, 4, 5] = 4, now_ms: int | None = None, boot_id: str = "sim-boot") -> RatingEvent:
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    score = rng.choices(range(scale, 0, -1), weights=[60, 25, 10, 5][:scale] if scale <= 4 else [50, 25, 12, 8, 5])[0]
    reasons: tuple[str, ...] = tuple(sorted(rng.sample(REASONS, k=rng.randint(1, 2)))) if score <= 2 else ()
    return RatingEvent(
        v=1, event_id=new_event_id(), seq=seq, device=counter.device, centre=counter.centre,
        counter=counter.counter, officer=counter.officer, ticket=ticket, service=counter.service,
        dossier=None, scale=scale, score=score, reasons=reasons, input="touch",
        closed_at=closed_at, rated_at=now, sent_at=now, boot_id=boot_id, mono_ms=int(time.monotonic() * 1000),
    )


def run_counters(settings: MqttSettings, counters: list[SimCounter], ratings_per_counter: int,
                 interval_s: float = 0.0, seed: int = 7, qms: bool = True) -> list[RatingEvent]:
    """Drive every counter for ``ratings_per_counter`` citizens; return the ratings published.

    Returns only after the broker acknowledged every rating (QoS 1 PUBACK).
    """
    rng = random.Random(seed)
    qms_pub = RatingPublisher(settings, f"sim-qms-{seed}-{time.time_ns() % 10**9}")
    pubs = {c.device: RatingPublisher(settings, f"sim-{c.device}-{time.time_ns() % 10**9}") for c in counters}
    for p in (qms_pub, *pubs.values()):
        if not p.start():
            raise RuntimeError(f"simulator could not connect to {settings.url}")
    sent: list[RatingEvent] = []
    infos = []
    try:
        now = time.time_ns() // 1_000_000
        for c in counters:
            login = QmsEvent(v=1, type="officer_login", counter=c.counter, officer=c.officer, at=now)
            qms_pub.publish_raw(qms_topic(c.centre, c.counter), login.to_json())
        for n in range(ratings_per_counter):
            for c in counters:
                now = time.time_ns() // 1_000_000
                ticket = f"{c.counter[-2:].upper()}-{1000 + n}"
                if qms:
                    for kind, at in (("ticket_called", now - 180_000), ("ticket_closed", now)):
                        ev = QmsEvent(v=1, type=kind, counter=c.counter, officer=c.officer, ticket=ticket,  # type: ignore[arg-type]
                                      service=c.service, at=at)
                        infos.append(qms_pub.publish_raw(qms_topic(c.centre, c.counter), ev.to_json()))
                rating = make_rating(c, n, ticket, now, rng)
                infos.append(pubs[c.device].publish(rating))
                sent.append(rating)
            if interval_s:
                time.sleep(interval_s)
        for info in infos:
            if not wait_acknowledged(info, 60):
                raise RuntimeError("simulator: broker did not acknowledge every message within 60 s")
    finally:
        for p in (qms_pub, *pubs.values()):
            p.stop()
    return sent
