"""Convert contract messages into the InfluxDB points of DESIGN.md."""

from __future__ import annotations

import zlib

from broker.contract import DeviceStatus, RatingEvent
from storage.lineproto import FieldValue, Point
from storage.schema import MAX_REJECTED_PAYLOAD, WALKUP_FALSE, WALKUP_TRUE, Field, Measurement, Tag

from .registry import Names
from .tickets import Close


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
    officer: str | None = None,
    service: str | None = None,
    response_ms: int | None = None,
    terminal_officer: str | None = None,
    ticket_id: str | None = None,
    bound_close_ms: int | None = None,
    digest: str | None = None,
    counter: str | None = None,
) -> Point:
    """The ``rating`` point. Ticket, dossier and event_id are fields (cardinality).

    ``officer``/``service`` are the attributed ones (the QMS close's in a QMS centre); the
    terminal's own officer is kept in ``terminal_officer`` when it differs. ``counter`` is the
    attributed counter of a web rating (its QMS close's); a terminal's is its own.
    """
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
    if response_ms is not None:
        fields[Field.RESPONSE_MS] = max(0, response_ms)
    elif closed is not None:
        fields[Field.RESPONSE_MS] = max(0, rated - closed)
    tid = ticket_id if ticket_id is not None else event.ticket_id
    if tid:
        fields[Field.TICKET_ID] = tid
    if terminal_officer:
        fields[Field.TERMINAL_OFFICER] = terminal_officer
    if bound_close_ms is not None:
        fields[Field.CLOSED_AT_MS] = bound_close_ms
    if digest:
        fields[Field.DIGEST] = digest
    if event.source is not None:
        fields[Field.SOURCE] = event.source
    if event.comment:
        fields[Field.COMMENT] = event.comment
    tags = {
        Tag.PROVINCE: province,
        Tag.CENTRE: event.centre,
        Tag.COUNTER: event.counter if counter is None else counter,
        Tag.OFFICER: event.officer if officer is None else officer,
        Tag.SERVICE: (event.service or "") if service is None else service,
        Tag.DEVICE: event.device,
        Tag.CLASS: event.satisfaction.value,
        Tag.WALKUP: WALKUP_TRUE if event.walkup else WALKUP_FALSE,
    }
    return Point(Measurement.RATING, tags, fields, rating_time_ns(event, rated))


def escalation_point(rating: Point, event: RatingEvent, *, officer: str, names: Names, rated_local: str,
                     rated_at_ms: int, at_ns: int, measurement: str = Measurement.ESCALATION,
                     late_ms: int | None = None, counter: str | None = None, late_by: str | None = None) -> Point:
    """The ``escalation`` point of a newly accepted "Không hài lòng" rating (preamble's agreed shape).

    Timestamped at the ingest's arrival time, so a late or clock-skewed rating still falls in the
    alert's evaluation window; ``officer`` is "" for an unverified walk-up claim. The same shape is
    written as ``complaint`` (stamped at the tap) and, with ``late_ms``, as ``late_escalation``
    (``late_by``: its text, when not simply how late ``late_ms`` is). ``counter``: the rating's stored
    counter when it is not the event's (a web rating's is its close's).
    """
    tags = {
        Tag.PROVINCE: str(rating.tags[Tag.PROVINCE]),
        Tag.CENTRE: event.centre,
        Tag.COUNTER: counter or event.counter,
        Tag.OFFICER: officer,
        Tag.DEVICE: event.device,
        Tag.SERVICE: str(rating.tags[Tag.SERVICE]),
        Tag.TICKET: event.ticket or "",
        Tag.CENTRE_NAME: names.centre,
        Tag.COUNTER_LABEL: names.counter,
        Tag.OFFICER_NAME: names.officer if officer else "",
        Tag.RATED_LOCAL: rated_local,
        Tag.REASONS: ",".join(event.reasons),
    }
    fields: dict[str, FieldValue] = {
        Field.SCORE: event.score,
        Field.SCALE: event.scale,
        Field.EVENT_ID: event.event_id,
        Field.RATED_AT_MS: rated_at_ms,
        Field.WALKUP: event.walkup,
    }
    if late_ms is not None:
        tags[Tag.LATE_BY] = late_by or late_text(late_ms)
        fields[Field.LATE_S] = late_ms // 1000
    return Point(measurement, tags, fields, at_ns)


# a web "Không hài lòng": late_by is how long after the ticket's close, and says it came by phone
POST_VISIT_BY = "sau khi được phục vụ, qua điện thoại"


def late_text(ms: int) -> str:
    """How late, as a supervisor reads it: "2 giờ 05 phút", "3 ngày 4 giờ", "45 phút"."""
    minutes = ms // 60_000
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} ngày {hours} giờ"
    if hours:
        return f"{hours} giờ {mins:02d} phút"
    return f"{mins} phút"


def rejected_point(
    reason: str, centre: str, topic: str, device: str, payload: bytes, detail: str, at_ns: int, counter: str = "",
    *, province: str = "", officer: str = "", service: str = "",
) -> Point:
    """A ``rejected`` point: nothing invalid vanishes silently.

    Every dimension a dashboard filters by is a tag (province, centre, counter, officer, service,
    device), so the rejections panel follows the board's variables; "" where the message names none.
    """
    text = payload[:MAX_REJECTED_PAYLOAD].decode("utf-8", errors="replace")
    tags = {Tag.REASON: reason, Tag.PROVINCE: province, Tag.CENTRE: centre or "unknown", Tag.COUNTER: counter,
            Tag.OFFICER: officer, Tag.SERVICE: service, Tag.DEVICE: device}
    return Point(
        Measurement.REJECTED,
        tags,
        {Field.TOPIC: topic[:256], Field.PAYLOAD: text, Field.DETAIL: detail[:512]},
        at_ns,
    )


def ticket_point(province: str, centre: str, close: Close, number: str, ticket_id: str | None,
                 dossier: str | None, serve_s: float | None) -> Point:
    """One ``ticket`` point per ticket instance, at its first close (a re-close adds none).

    + a ticket-derived ns offset: two tickets closed at one counter in the same ms (a no-show closed right
    after) must stay two points; deterministic, so a replayed close rewrites its own point.
    """
    fields: dict[str, FieldValue] = {Field.TICKET: number}
    if ticket_id:
        fields[Field.TICKET_ID] = ticket_id
    if dossier:
        fields[Field.DOSSIER] = dossier
    if serve_s is not None:
        fields[Field.SERVE_S] = serve_s
    tags = {Tag.PROVINCE: province, Tag.CENTRE: centre, Tag.COUNTER: close.counter, Tag.OFFICER: close.officer,
            Tag.SERVICE: close.service}
    offset_ns = zlib.crc32((ticket_id or number).encode()) % 1_000_000
    return Point(Measurement.TICKET, tags, fields, close.at_ms * 1_000_000 + offset_ns)


def reclose_point(province: str, centre: str, close: Close, number: str, ticket_id: str | None) -> Point:
    """A recall/re-close: not served again (no ``ticket`` point), kept for the index rebuild (tickets.py)."""
    p = ticket_point(province, centre, close, number, ticket_id, None, None)
    return Point(Measurement.TICKET_RECLOSE, p.tags, p.fields, p.time_ns)


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
