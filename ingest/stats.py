"""The ingest's own counters (logged and written as ``ingest_stats``)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from storage.lineproto import FieldValue, Point
from storage.schema import Field, Measurement, Tag


@dataclass
class IngestStats:
    received: int = 0
    acked: int = 0
    abandoned: int = 0  # un-acked copies of a previous connection; the broker redelivers them
    written: int = 0
    ratings: int = 0
    tickets: int = 0
    statuses: int = 0
    held: int = 0
    write_failures: int = 0
    dead_lettered: int = 0
    late_escalations: int = 0  # "Không hài lòng" that arrived too late to page: told as late_escalation
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
        """Messages received and not yet acked (queued, being written, or held)."""
        return max(0, self.received - self.acked - self.abandoned)

    def as_fields(self) -> dict[str, FieldValue]:
        with self._lock:
            fields: dict[str, FieldValue] = {
                "received": self.received, "acked": self.acked, "written": self.written,
                "ratings": self.ratings, "tickets": self.tickets, "statuses": self.statuses,
                "held": self.held, "in_flight": self.in_flight, "write_failures": self.write_failures,
                "dead_lettered": self.dead_lettered, "batches": self.batches,
                Field.LATE_ESCALATIONS: self.late_escalations,
                "batch_last_ms": round(self.last_batch_s * 1000, 3),
                "batch_max_ms": round(self.max_batch_s * 1000, 3),
                "rejected": sum(self.rejected.values()),
            }
            for reason, n in self.rejected.items():
                fields[f"rejected_{reason}"] = n
        return fields

    def point(self, instance: str, at_ns: int) -> Point:
        return Point(Measurement.INGEST_STATS, {Tag.INSTANCE: instance}, self.as_fields(), at_ns)

    def summary(self) -> str:
        rej = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        return (
            f"received={self.received} acked={self.acked} written={self.written} ratings={self.ratings} "
            f"tickets={self.tickets} statuses={self.statuses} held={self.held} "
            f"write_failures={self.write_failures} dead_lettered={self.dead_lettered} "
            f"in_flight={self.in_flight} rejected[{rej}]"
        )
