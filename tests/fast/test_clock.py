"""Clock correction in-process: which device clocks are trusted, corrected or refused.

A Pi without a real-time clock boots in 1970 (or at its last shutdown) until NTP answers; a
rating's times are then corrected by the offset between the device's ``sent_at`` and our arrival
(tests/ingest/ runs the same through the real broker and InfluxDB).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.contract import RatingEvent, new_event_id, parse_rating
from ingest.clock import ClockCorrector
from ingest.config import ClockSettings
from ingest.rejection import RuleRejection

NOW = 1_796_612_400_000  # 2026-12-07 10:00 in Hanoi, as epoch ms
BOOT_1970 = 5_000  # a device clock 5 s after the epoch


def event(rated: int, sent: int, closed: int | None = None) -> RatingEvent:
    return parse_rating(json.dumps({
        "v": 1, "event_id": new_event_id(), "seq": 1, "device": "d1", "centre": "c1", "counter": "q1",
        "officer": "cb1", "ticket": "A001" if closed is not None else None, "service": None, "dossier": None,
        "scale": 4, "score": 4, "reasons": [], "input": "touch", "closed_at": closed, "rated_at": rated,
        "sent_at": sent, "boot_id": "b", "mono_ms": 1}).encode())


CASES: list[tuple[str, dict[str, Any], int, tuple[int, int | None, bool]]] = [
    # (case, event times, received, (rated_ms, closed_ms, corrected))
    ("a good clock is trusted", {"rated": NOW - 2000, "sent": NOW - 1000, "closed": NOW - 5000}, NOW,
     (NOW - 2000, NOW - 5000, False)),
    ("a little behind is trusted (network time)", {"rated": NOW - 30_000, "sent": NOW - 30_000}, NOW,
     (NOW - 30_000, None, False)),
    ("a clock at 1970 is moved by the arrival offset", {"rated": BOOT_1970, "sent": BOOT_1970 + 1000,
                                                        "closed": BOOT_1970 - 4000}, NOW,
     (NOW - 1000, NOW - 5000, True)),
    ("a clock 10 min ahead is moved back", {"rated": NOW + 600_000, "sent": NOW + 600_000}, NOW,
     (NOW, None, True)),
    ("sent from the outbox a day later: rated stays", {"rated": NOW - 86_400_000, "sent": NOW}, NOW,
     (NOW - 86_400_000, None, False)),
]


@pytest.mark.parametrize(("case", "times", "received", "want"), CASES, ids=[c[0] for c in CASES])
def test_times(case: str, times: dict[str, Any], received: int, want: tuple[int, int | None, bool]) -> None:
    got = ClockCorrector(ClockSettings()).times(event(**times), received)
    assert tuple(got) == want, case


REFUSED = [
    ("rated after it was sent", {"rated": NOW, "sent": NOW - 10_000}),
    ("waited longer than an outbox keeps anything", {"rated": NOW - 40 * 86_400_000, "sent": NOW}),
]


@pytest.mark.parametrize(("case", "times"), REFUSED, ids=[c[0] for c in REFUSED])
def test_absurd_times_are_refused(case: str, times: dict[str, Any]) -> None:
    with pytest.raises(RuleRejection) as exc:
        ClockCorrector(ClockSettings()).times(event(**times), NOW)
    assert exc.value.reason == "absurd_timestamp", case


def test_a_corrected_rating_keeps_its_times_on_redelivery() -> None:
    """The point must be identical when the broker redelivers it later (idempotent write)."""
    clock = ClockCorrector(ClockSettings())
    ev = event(BOOT_1970, BOOT_1970 + 1000)
    first = clock.times(ev, NOW)
    assert first.corrected
    assert clock.times(ev, NOW + 3_600_000) == first, "redelivered an hour later: same corrected time"


def test_the_memory_of_corrections_is_bounded() -> None:
    clock = ClockCorrector(ClockSettings(), remember=10)
    for _ in range(25):
        clock.times(event(BOOT_1970, BOOT_1970 + 1000), NOW)
    assert len(clock._known) == 10
