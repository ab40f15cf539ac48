"""The headless terminal thread: posted events run in order, and timeouts still fire under a steady stream."""

from __future__ import annotations

import threading
import time

from device.runtime import HeadlessLoop
from tests.support.waiting import wait_until


def test_ticks_fire_while_events_keep_arriving_and_order_is_kept() -> None:
    ticks: list[float] = []
    seen: list[int] = []
    loop = HeadlessLoop(tick=lambda: ticks.append(time.monotonic()), tick_s=0.05).start()
    stop = threading.Event()

    def flood() -> None:  # an event every ~5 ms, for at most 3 s
        n, end = 0, time.monotonic() + 3
        while not stop.is_set() and time.monotonic() < end:
            loop.post(lambda n=n: seen.append(n))
            n += 1
            stop.wait(0.005)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(ticks) >= 5, 3, 0.02, what="ticks under load")
    finally:
        stop.set()
        t.join(5)
        loop.stop()
    assert seen == sorted(seen) and len(seen) > 10


def test_a_failing_event_does_not_stop_the_loop() -> None:
    done = threading.Event()
    loop = HeadlessLoop().start()
    loop.post(lambda: 1 / 0)  # type: ignore[func-returns-value]
    loop.post(done.set)
    try:
        assert done.wait(2)
    finally:
        loop.stop()
