"""Convert contract messages into the InfluxDB points of DESIGN.md."""

from __future__ import annotations

from broker.contract import DeviceStatus, RatingEvent

from .lineproto import FieldValue, Point
from .storage import MAX_REJECTED_PAYLOAD, WALKUP_FALSE, WALKUP_TRUE, Field, Measurement, Tag


def rating_time_ns(event: RatingEvent, rated_at_ms: int | None = None) -> int:
    """rated_at ms * 1e6 + (seq mod 1e6): unique per device, identical on redelivery."""
    ms = event.rated_at if rated_at_ms is None else rated_at_ms
    return ms * 1_000_000 + event.seq % 1_000_000


def rating_point(
    event: RatingEvent,
    province: str,
    *,
    rated_at_ms: int | None = None,
    closed_at_ms: int | None = None,
    clock_corrected: bool = False,
) -> Point:
    """The ``rating`` point. Ticket, dossier and event_id are fields (cardinality)."""
    rated = event.rated_at if rated_at_ms is None else rated_at_ms
    closed = event.closed_at if closed_at_ms is None else closed_at_ms
    fields: dict[str, FieldValue] = {
        Field.SCORE: event.score,
        Field.SCALE: event.scale,
        Field.REASONS: ",".join(event.reasons),
        Field.EVENT_ID: event.event_id,
        Field.INPUT: event.input,
        Field.CLOCK_CORRECTED: clock_corrected,
    }
    if event.ticket is not None:
        fields[Field.TICKET] = event.ticket
    if event.dossier:
        fields[Field.DOSSIER] = event.dossier
    if closed is not None:
        fields[Field.RESPONSE_MS] = max(0, rated - closed)
    tags = {
        Tag.PROVINCE: province,
        Tag.CENTRE: event.centre,
        Tag.COUNTER: event.counter,
        Tag.OFFICER: event.officer,
        Tag.SERVICE: event.service or "",
        Tag.DEVICE: event.device,
        Tag.CLASS: event.satisfaction.value,
        Tag.WALKUP: WALKUP_TRUE if event.walkup else WALKUP_FALSE,
    }
    return Point(Measurement.RATING, tags, fields, rating_time_ns(event, rated))


def rejected_point(
    reason: str, centre: str, topic: str, device: str, payload: bytes, detail: str, at_ns: int
) -> Point:
    """A ``rejected`` point: nothing invalid vanishes silently."""
    text = payload[:MAX_REJECTED_PAYLOAD].decode("utf-8", errors="replace")
    return Point(
        Measurement.REJECTED,
        {Tag.REASON: reason, Tag.CENTRE: centre or "unknown"},
        {Field.TOPIC: topic[:256], Tag.DEVICE: device, Field.PAYLOAD: text, Field.DETAIL: detail[:512]},
        at_ns,
    )


def status_point(status: DeviceStatus, at_ms: int) -> Point:
    fields: dict[str, FieldValue] = {
        Field.ONLINE: status.online,
        Field.OUTBOX_DEPTH: status.outbox_depth,
        Field.OUTBOX_NEARLY_FULL: status.outbox_nearly_full,
        Field.UPTIME_S: status.uptime_s,
        Field.VERSION: status.version,
    }
    if status.cpu_temp_c is not None:
        fields[Field.CPU_TEMP_C] = float(status.cpu_temp_c)
    if status.state:
        fields[Field.STATE] = status.state
    tags = {Tag.CENTRE: status.centre, Tag.DEVICE: status.device}
    return Point(Measurement.DEVICE_STATUS, tags, fields, at_ms * 1_000_000)
