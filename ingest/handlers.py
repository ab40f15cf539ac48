"""Turn one MQTT message into InfluxDB points: a rating, a ticket, a status, or a rejection.

Never raises for bad input: every message ends as points to write (possibly a
single ``rejected`` point with the reason), and is acked only after they are written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from broker.contract import (
    ContractError,
    Topic,
    TopicKind,
    check_rating_topic,
    parse_qms,
    parse_rating,
    parse_status,
    parse_topic,
)

from .config import IngestConfig
from .lineproto import Point
from .points import rating_point, rejected_point, status_point
from .stats import IngestStats

log = logging.getLogger("hailong.ingest")


@dataclass(frozen=True, slots=True)
class Handled:
    points: tuple[Point, ...]
    outcome: str  # "rating", "ticket", "status", "ignored" or "rejected:<reason>"


class MessageHandler:
    def __init__(self, config: IngestConfig, stats: IngestStats, clock_ns: Callable[[], int]) -> None:
        self.config = config
        self.stats = stats
        self._clock_ns = clock_ns
        self._last_reject_ns = 0
        self._lock = threading.Lock()
        # ticket_called times, to compute serve_s of the ticket point
        self._called_at: dict[tuple[str, str, str], int] = {}

    def _unique_ns(self, at_ns: int) -> int:
        # two rejections in the same nanosecond with the same tags would overwrite each other
        with self._lock:
            self._last_reject_ns = max(at_ns, self._last_reject_ns + 1)
            return self._last_reject_ns

    def reject(self, reason: str, topic: str, payload: bytes, detail: str, received_ns: int,
               centre: str = "", device: str = "") -> Handled:
        self.stats.count_rejected(reason)
        log.warning("rejected %s on %s (device=%s): %s", reason, topic, device or "?", detail)
        point = rejected_point(reason, centre, topic, device, payload, detail, self._unique_ns(received_ns))
        return Handled((point,), f"rejected:{reason}")

    def dead_letter(self, point: Point, server_message: str) -> Point:
        """A point InfluxDB refused forever becomes a ``rejected`` point carrying it."""
        return rejected_point(
            "write_rejected",
            str(point.tags.get("centre", "")),
            point.measurement,
            str(point.tags.get("device", "")),
            point.to_line().encode("utf-8"),
            server_message,
            self._unique_ns(self._clock_ns()),
        )

    def handle(self, topic_name: str, payload: bytes, received_ns: int) -> Handled:
        try:
            topic = parse_topic(topic_name)
        except ContractError as exc:
            return self.reject(exc.reason, topic_name, payload, exc.message, received_ns)
        try:
            if topic.kind is TopicKind.RATING:
                return self.handle_rating(topic, payload, received_ns)
            if topic.kind is TopicKind.STATUS:
                status = parse_status(payload)
                if status.device != topic.device or status.centre != topic.centre:
                    raise ContractError("topic_mismatch", "status names another device/centre than its topic")
                self.stats.statuses += 1
                return Handled((status_point(status, received_ns // 1_000_000),), "status")
            if topic.kind is TopicKind.QMS:
                return self.handle_qms(topic, payload, received_ns)
            return Handled((), "ignored")
        except ContractError as exc:
            return self.reject(exc.reason, topic_name, payload, exc.message, received_ns,
                               centre=topic.centre, device=topic.device or "")

    def handle_rating(self, topic: Topic, payload: bytes, received_ns: int) -> Handled:
        event = parse_rating(payload)
        check_rating_topic(topic, event)
        self.stats.ratings += 1
        return Handled((rating_point(event, self.config.province),), "rating")

    def handle_qms(self, topic: Topic, payload: bytes, received_ns: int) -> Handled:
        event = parse_qms(payload)
        if event.counter != topic.counter:
            raise ContractError("topic_mismatch", f"counter {event.counter!r} != topic counter {topic.counter!r}")
        key = (topic.centre, event.counter, event.ticket or "")
        if event.type == "ticket_called":
            self._called_at[key] = event.at
            if len(self._called_at) > 100_000:  # bounded: drop the oldest half
                for k in list(self._called_at)[:50_000]:
                    del self._called_at[k]
            return Handled((), "ignored")
        if event.type != "ticket_closed":
            return Handled((), "ignored")
        fields: dict[str, bool | int | float | str] = {"ticket": event.ticket or ""}
        if event.dossier:
            fields["dossier"] = event.dossier
        called = self._called_at.pop(key, None)
        if called is not None:
            fields["serve_s"] = max(0.0, (event.at - called) / 1000)
        tags = {"province": self.config.province, "centre": topic.centre, "counter": event.counter,
                "officer": event.officer, "service": event.service or ""}
        self.stats.tickets += 1
        return Handled((Point("ticket", tags, fields, event.at * 1_000_000),), "ticket")
