"""When a client tries the broker again: randomised, capped delays that spread a fleet out.

A province broker serves ~2,000 terminals. When it restarts, every one of them loses its
connection in the same millisecond; a deterministic backoff (paho's own: 1, 2, 4, ... s)
keeps them in lockstep, so each retry is one wave of 2,000 TCP SYNs and TLS handshakes
that overflows the broker's listen queue (Mosquitto 2.0.11 listens with a backlog of 100)
and makes most of the wave time out and wait a whole step again (issue 20: 100 % back only
45 s after a 30 s outage). Three rules, one schedule for every client we ship
(docs/fleet.md, "Reconnects"):

- the first attempt after an established connection is lost waits ``uniform(0, spread_s)``:
  a single blip costs at most a few seconds, a fleet-wide loss is spread over the window;
- every failed attempt after that waits with *full jitter*: ``uniform(min_s, ceiling)``
  where the ceiling doubles from ``2 * min_s`` up to ``max_s``. The randomness is what
  breaks the lockstep; the cap bounds how long a client can miss a broker that is back;
- a success resets the schedule.

The delays are a pure function of the attempt count and the random source, so the tests
check their bounds and distribution directly (tests/broker/test_backoff.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """The reconnect schedule of one client. Not thread-safe: one network thread owns it."""

    min_s: float
    max_s: float
    spread_s: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0  # failed attempts since the last success or loss

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        if self.spread_s < 0:
            raise ValueError(f"spread_s must be >= 0, got {self.spread_s}")

    def ceiling(self, failures: int) -> float:
        """The largest delay after ``failures`` failed attempts in a row (1 = the first failure)."""
        # the exponent is bounded so that a client failing for weeks never overflows a float
        return min(self.max_s, self.min_s * 2.0 ** min(max(failures, 1), 64))

    def after_loss(self) -> float:
        """An established connection ended: the first attempt, spread over ``spread_s``."""
        self.failures = 0
        return self.rng.uniform(0.0, self.spread_s)

    def after_failure(self) -> float:
        """An attempt failed (refused, timed out, TLS, CONNACK refusal): full jitter, capped."""
        self.failures += 1
        return self.rng.uniform(self.min_s, self.ceiling(self.failures))

    def connected(self) -> None:
        """A session was established: the next loss starts the schedule again."""
        self.failures = 0
