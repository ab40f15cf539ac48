"""Abuse limits: token buckets per client address and per link, bounded in memory.

One address may make ``per_ip_per_min`` requests a minute (a school's or a centre's Wi-Fi behind
one NAT still gets plenty); one link may submit ``posts_per_link`` times in ``link_window_s``
(a double tap is fine, a script hammering one ticket is not). Both tables forget the least
recently seen entry first, so a flood of new addresses cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Buckets:
    """Token buckets keyed by a string: ``capacity`` tokens, refilled at ``capacity / period_s`` per second."""

    def __init__(self, capacity: int, period_s: float, tracked: int) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period_s
        self.tracked = tracked
        self._lock = threading.Lock()
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._state.pop(key, (self.capacity, t))
            tokens = min(self.capacity, tokens + (t - at) * self.rate)
            ok = tokens >= 1
            self._state[key] = (tokens - 1 if ok else tokens, t)
            while len(self._state) > self.tracked:
                self._state.popitem(last=False)
            return ok
