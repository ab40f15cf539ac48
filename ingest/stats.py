"""The ingest's own counters (logged and written as ``ingest_stats``)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    received: int = 0
    acked: int = 0
    written: int = 0
    ratings: int = 0
    tickets: int = 0
    statuses: int = 0
    write_failures: int = 0
    batches: int = 0
    last_batch_s: float = 0.0
    max_batch_s: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def record_batch(self, n_points: int, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.last_batch_s = seconds
            self.max_batch_s = max(self.max_batch_s, seconds)

    @property
    def in_flight(self) -> int:
        return max(0, self.received - self.acked)

    def summary(self) -> str:
        rej = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"received={self.received} acked={self.acked} written={self.written} ratings={self.ratings} "
            f"tickets={self.tickets} statuses={self.statuses} write_failures={self.write_failures} "
            f"in_flight={self.in_flight} rejected[{rej}]"
        )
