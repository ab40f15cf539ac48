"""Convert contract messages into the InfluxDB points of DESIGN.md."""

from __future__ import annotations

from broker.contract import DeviceStatus, RatingEvent

from .lineproto import FieldValue, Point

MAX_REJECTED_PAYLOAD = 1024


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
        "score": event.score,
        "scale": event.scale,
        "reasons": ",".join(event.reasons),
        "event_id": event.event_id,
        "input": event.input,
        "clock_corrected": clock_corrected,
    }
    if event.ticket is not None:
        fields["ticket"] = event.ticket
    if event.dossier:
        fields["dossier"] = event.dossier
    if closed is not None:
        fields["response_ms"] = max(0, rated - closed)
    tags = {
        "province": province,
        "centre": event.centre,
        "counter": event.counter,
        "officer": event.officer,
        "service": event.service or "",
        "device": event.device,
        "class": event.satisfaction.value,
        "walkup": "true" if event.walkup else "false",
    }
    return Point("rating", tags, fields, rating_time_ns(event, rated))


def rejected_point(
    reason: str, centre: str, topic: str, device: str, payload: bytes, detail: str, at_ns: int
) -> Point:
    """A ``rejected`` point: nothing invalid vanishes silently."""
    text = payload[:MAX_REJECTED_PAYLOAD].decode("utf-8", errors="replace")
    return Point(
        "rejected",
        {"reason": reason, "centre": centre or "unknown"},
        {"topic": topic[:256], "device": device, "payload": text, "detail": detail[:512]},
        at_ns,
    )


def status_point(status: DeviceStatus, at_ms: int) -> Point:
    fields: dict[str, FieldValue] = {
        "online": status.online,
        "outbox_depth": status.outbox_depth,
        "outbox_nearly_full": status.outbox_nearly_full,
        "uptime_s": status.uptime_s,
        "version": status.version,
    }
    if status.cpu_temp_c is not None:
        fields["cpu_temp_c"] = float(status.cpu_temp_c)
    if status.state:
        fields["state"] = status.state
    return Point("device_status", {"centre": status.centre, "device": status.device}, fields, at_ms * 1_000_000)
