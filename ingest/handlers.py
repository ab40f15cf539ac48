"""Turn one MQTT message into InfluxDB points: a rating, a ticket, a status, or a rejection.

Never raises for bad input: every message ends as points to write (possibly a
single ``rejected`` point with the reason), or as "held" (a rating waiting for
its ticket_closed), and is acked only after its points are written.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import NamedTuple

from broker.contract import (
    ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    QMS_BRIDGE_DEVICE,
    ContractError,
    RatingEvent,
    Topic,
    TopicKind,
    parse_qms,
    parse_rating,
    parse_status,
    parse_topic,
    qms_bridge_status_centre,
)
from storage.influxql import InfluxQL
from storage.lineproto import Point
from storage.schema import NOT_SATISFIED, Measurement, Tag

from .clock import ClockCorrector
from .config import IngestConfig
from .points import (
    POST_VISIT_BY,
    escalation_point,
    late_text,
    reclose_point,
    rejected_point,
    status_point,
    ticket_point,
)
from .ratings import Accepted, RatingJudge
from .registry import Names, RegistryHolder, local_time
from .rejection import RuleRejection
from .stats import IngestStats
from .tickets import Close, CloseKind, TicketIndex

log = logging.getLogger("hailong.ingest")
MAX_CALLED = 100_000
# Topics repeat (one per device and kind): caching the parse saves ~20% of the per-message CPU.
# Only valid topics are cached (a bad one raises), so garbage cannot fill the cache.
cached_parse_topic = functools.lru_cache(maxsize=65_536)(parse_topic)
_ID = re.compile(ID_PATTERN)


def claimed(payload: bytes) -> dict[str, str]:
    """What a refused payload says about its counter, officer and service (tags of its ``rejected`` point).

    Read loosely (the payload may be malformed: that can be why it was refused); a value is kept only
    when it is a well-formed id, so garbage cannot become a tag value (a new series), else "".
    """
    doc: object = None
    if len(payload) <= MAX_PAYLOAD_BYTES:
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            doc = None
    if not isinstance(doc, dict):
        return {}
    out = {}
    for key in (Tag.COUNTER, Tag.OFFICER, Tag.SERVICE):
        value = doc.get(key)
        if isinstance(value, str) and _ID.fullmatch(value):
            out[key] = value
    return out


class Handled(NamedTuple):
    """The verdict on one message (a NamedTuple: one per message, cheap to build)."""

    points: tuple[Point, ...]
    outcome: str  # "rating", "ticket", "reclosed", "status", "ignored", "held" or "rejected:<reason>"


HELD = Handled((), "held")  # the one "held" verdict: callers test ``is HELD``


class MessageHandler:
    def __init__(self, config: IngestConfig, stats: IngestStats, clock_ns: Callable[[], int],
                 registry: RegistryHolder | None = None) -> None:
        self.config = config
        self.stats = stats
        self._clock_ns = clock_ns
        self._last_reject_ns = 0
        self._lock = threading.Lock()
        self.registry = registry or RegistryHolder(None, config.province)
        s = config.integrity
        self.index = TicketIndex(s.tickets_per_counter, s.reclose_window_s, self.registry.service_day,
                                 s.tickets_archived)
        self.clock = ClockCorrector(config.clock)
        self.judge = RatingJudge(s, self.registry, self.index, self.clock)
        # ticket_called times, to compute serve_s of the ticket point (bounded)
        self._called_at: dict[tuple[str, str, str], int] = {}
        self.escalations = 0
        self._escalate_within_ms = config.integrity.escalate_within_s * 1000

    def rebuild(self, db: InfluxQL, lookback_s: int) -> None:
        """At start: ticket instances first, then the ratings that took them, then corrected clocks."""
        self.index.rebuild(db, lookback_s)
        self.judge.rebuild(db, lookback_s)
        self.clock.rebuild(db, lookback_s)

    def apply_lookups(self) -> int:
        """On the worker thread, before held ratings are judged again: InfluxDB's answers into the index."""
        lookup = self.judge.lookup
        return lookup.apply(self.index) if lookup is not None else 0

    def _unique_ns(self, at_ns: int) -> int:
        # two rejections in the same nanosecond with the same tags would overwrite each other
        with self._lock:
            self._last_reject_ns = max(at_ns, self._last_reject_ns + 1)
            return self._last_reject_ns

    def reject(self, reason: str, topic: str, payload: bytes, detail: str, received_ns: int,
               centre: str = "", device: str = "", counter: str = "", exact_ns: int | None = None) -> Handled:
        """``exact_ns``: a time that must not be made unique (a replayed message rewrites its point).

        The point carries every tag a dashboard filters by: the centre's province (registry), and the
        counter, officer and service the payload names ("" when it names none or cannot be read).
        """
        self.stats.count_rejected(reason)
        log.warning("rejected %s on %s (device=%s): %s", reason, topic, device or "?", detail)
        at_ns = self._unique_ns(received_ns) if exact_ns is None else exact_ns
        names = claimed(payload)
        point = rejected_point(reason, centre, topic, device, payload, detail, at_ns,
                               counter=counter or names.get(Tag.COUNTER, ""),
                               province=self.registry.province_of(centre) if centre else "",
                               officer=names.get(Tag.OFFICER, ""), service=names.get(Tag.SERVICE, ""))
        return Handled((point,), f"rejected:{reason}")

    def dead_letter(self, point: Point, server_message: str) -> Point:
        """A point InfluxDB refused forever becomes a ``rejected`` point carrying it (and its tags)."""
        centre = str(point.tags.get(Tag.CENTRE, ""))
        return rejected_point(
            "write_rejected",
            centre,
            point.measurement,
            str(point.tags.get(Tag.DEVICE, "")),
            point.to_line().encode("utf-8"),
            server_message,
            self._unique_ns(self._clock_ns()),
            counter=str(point.tags.get(Tag.COUNTER, "")),
            province=str(point.tags.get(Tag.PROVINCE, "")) or (self.registry.province_of(centre) if centre else ""),
            officer=str(point.tags.get(Tag.OFFICER, "")),
            service=str(point.tags.get(Tag.SERVICE, "")),
        )

    def handle(self, topic_name: str, payload: bytes, received_ns: int) -> Handled:
        """Judge one message. ``received_ns`` is its FIRST arrival (held ratings keep it)."""
        if not payload and topic_name.endswith("/status"):
            # an empty retained message is how an operator clears a retired device's (or bridge's)
            # retained status: a broker operation, not a device speaking, so nothing to store or reject
            return Handled((), "ignored")
        bridge_centre = qms_bridge_status_centre(topic_name)
        if bridge_centre is not None:
            return self.handle_bridge_status(topic_name, bridge_centre, payload, received_ns)
        try:
            topic = cached_parse_topic(topic_name)
        except ContractError as exc:
            return self.reject(exc.reason, topic_name, payload, exc.message, received_ns)
        counter = topic.counter or ""
        try:
            if topic.kind is TopicKind.RATING:
                event = parse_rating(payload)
                counter = event.counter
                return self.handle_rating(topic, event, received_ns)
            if topic.kind is TopicKind.STATUS:
                return self.handle_status(topic, payload, received_ns)
            if topic.kind is TopicKind.QMS:
                return self.handle_qms(topic, payload)
            return Handled((), "ignored")
        except (ContractError, RuleRejection) as exc:
            return self.reject(exc.reason, topic_name, payload, exc.message, received_ns,
                               centre=topic.centre, device=topic.device or "", counter=counter)
        except Exception as exc:  # a bug must not stop the stream: make it visible instead
            log.exception("internal error handling %s", topic_name)
            return self.reject("internal_error", topic_name, payload, repr(exc), received_ns,
                               centre=topic.centre, device=topic.device or "", counter=counter)

    def handle_rating(self, topic: Topic, event: RatingEvent, received_ns: int) -> Handled:
        verdict = self.judge.judge(topic, event, received_ns // 1_000_000, self._clock_ns() // 1_000_000)
        if not isinstance(verdict, Accepted):
            return HELD
        self.stats.ratings += 1
        if not verdict.new or event.satisfaction.value != NOT_SATISFIED:
            return Handled((verdict.point,), "rating")
        # a newly accepted "Không hài lòng": escalate once, stamped at arrival (not the terminal's clock)
        a = verdict.attribution
        officer = a.officer if a.officer_verified else ""
        counter = a.counter or event.counter  # a web rating's counter is its close's
        names = self.registry.names(event.centre, counter, officer)
        rated_local = local_time(a.rated_ms, self.registry.timezone_of(event.centre))
        if event.input == "web":
            return Handled((verdict.point, self._post_visit(verdict, event, officer, counter, names, rated_local,
                                                            received_ns)), "rating")
        # the same complaint stamped at its tap (never later than its arrival): the burst rule counts by it
        complaint = escalation_point(verdict.point, event, officer=officer, names=names, rated_local=rated_local,
                                     rated_at_ms=a.rated_ms, at_ns=min(verdict.point.time_ns, received_ns),
                                     measurement=Measurement.COMPLAINT)
        late_ms = received_ns // 1_000_000 - a.rated_ms
        if late_ms > self._escalate_within_ms:
            # rated too long ago to reach the citizen (an outage backlog): not paged as urgent, but told
            # by the lower-severity rule "Không hài lòng nhận muộn" (one message per centre) and counted
            self.stats.late_escalations += 1
            late = escalation_point(verdict.point, event, officer=officer, names=names, rated_local=rated_local,
                                    rated_at_ms=a.rated_ms, at_ns=self._unique_ns(received_ns),
                                    measurement=Measurement.LATE_ESCALATION, late_ms=late_ms)
            return Handled((verdict.point, complaint, late), "rating")
        escalation = escalation_point(verdict.point, event, officer=officer, names=names, rated_local=rated_local,
                                      rated_at_ms=a.rated_ms, at_ns=self._unique_ns(received_ns))
        self.escalations += 1
        return Handled((verdict.point, complaint, escalation), "rating")

    def _post_visit(self, verdict: Accepted, event: RatingEvent, officer: str, counter: str, names: Names,
                    rated_local: str, received_ns: int) -> Point:
        """A "Không hài lòng" from a phone: the citizen left the counter long ago (minutes to days).

        The urgent page (``escalation``) and the burst of taps at one counter (``complaint``) are for a
        citizen still in the building, so neither is written. It is told the way a late complaint is told:
        a ``late_escalation`` point (lower-severity rule "Không hài lòng nhận muộn", one message per
        centre; device tag "web"), whose ``late_s`` / ``late_by`` say how long after the ticket's close
        the citizen rated ("2 ngày 3 giờ sau khi được phục vụ, qua điện thoại"). Counted in
        ``ingest_stats.late_escalations``.
        """
        a = verdict.attribution
        after_ms = max(0, a.rated_ms - a.bound_close_ms) if a.bound_close_ms is not None else 0
        self.stats.late_escalations += 1
        return escalation_point(verdict.point, event, officer=officer, names=names, rated_local=rated_local,
                                rated_at_ms=a.rated_ms, at_ns=self._unique_ns(received_ns),
                                measurement=Measurement.LATE_ESCALATION, late_ms=after_ms, counter=counter,
                                late_by=f"{late_text(after_ms)} {POST_VISIT_BY}")

    def handle_status(self, topic: Topic, payload: bytes, received_ns: int) -> Handled:
        status = parse_status(payload)
        if status.device != topic.device or status.centre != topic.centre:
            raise ContractError("topic_mismatch", "status names another device/centre than its topic")
        self.registry.check_device(status.device, status.centre, None)
        self.stats.statuses += 1
        return Handled((status_point(status, received_ns // 1_000_000),), "status")

    def handle_bridge_status(self, topic_name: str, centre: str, payload: bytes, received_ns: int) -> Handled:
        """A QMS bridge's retained status: a ``device_status`` point with device ``qms-bridge``.

        The Fleet board shows a bridge like a terminal (online, state, last seen), and the device
        offline/silent rules cover it too.
        """
        try:
            status = parse_status(payload)
            if status.device != QMS_BRIDGE_DEVICE or status.centre != centre:
                raise ContractError("topic_mismatch", f"a bridge status on {topic_name} must name device "
                                    f"{QMS_BRIDGE_DEVICE!r} and centre {centre!r}")
            if self.registry.centre_ids() is not None and not self.registry.has_qms(centre):
                raise RuleRejection("unknown_device", f"centre {centre!r} has no queue system in the fleet "
                                    "registry: no QMS bridge may report for it", "centre")
        except (ContractError, RuleRejection) as exc:
            return self.reject(exc.reason, topic_name, payload, exc.message, received_ns, centre=centre,
                               device=QMS_BRIDGE_DEVICE)
        self.stats.statuses += 1
        return Handled((status_point(status, received_ns // 1_000_000),), "status")

    def handle_qms(self, topic: Topic, payload: bytes) -> Handled:
        event = parse_qms(payload)
        if event.counter != topic.counter:
            raise ContractError("topic_mismatch", f"counter {event.counter!r} != topic counter {topic.counter!r}")
        self.registry.check_qms_counter(topic.centre, event.counter)
        key = (topic.centre, event.counter, event.ticket or "")
        if event.type == "ticket_called":
            self._called_at[key] = event.at
            if len(self._called_at) > MAX_CALLED:  # bounded: drop the oldest half
                for k in list(self._called_at)[: MAX_CALLED // 2]:
                    del self._called_at[k]
            return Handled((), "ignored")
        if event.type != "ticket_closed" or event.ticket is None:
            return Handled((), "ignored")
        inst, kind = self.index.closed(topic.centre, event.counter, event.ticket, event.officer,
                                       event.service or "", event.at, event.ticket_id)
        called = self._called_at.pop(key, None)
        province = self.registry.province_of(topic.centre)
        if kind is CloseKind.RECLOSE:
            # a recall/re-close: the ticket was served once (its first close's point); ratings may bind here,
            # also after a restart (the rebuilt index reads these points back)
            return Handled((reclose_point(province, topic.centre, Close(event.counter, event.officer,
                                                                        event.service or "", event.at),
                                          event.ticket, inst.ticket_id),), "reclosed")
        self.stats.tickets += 1
        serve_s = max(0.0, (event.at - called) / 1000) if called is not None else None
        point = ticket_point(province, topic.centre, inst.first, event.ticket,
                             inst.ticket_id, event.dossier, serve_s)
        return Handled((point,), "ticket")
