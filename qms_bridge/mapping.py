"""Vendor record -> QmsEvent, declaratively (field paths and value maps from qms.toml).

One mapper serves both adapters: the webhook hands it the vendor's JSON body, the
SQL poller one row (a flat dict) per event type. Every problem is a
:class:`MappingError` naming the field, so the webhook can answer 4xx with the
reason and the SQL poller can log the row it could not use; nothing is guessed.

Event identity: a replayed webhook, a re-read row or a bridge restart must never
produce a second event, so the id is derived (UUIDv5) from what identifies the
event at the vendor: its ticket id (or, without one, the ticket number and the
centre's service day), the event type and the event time. The time is part of it
so a recall (the ticket called and closed again, later) is a new event, while the
same close read twice is the same event.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from broker.contract import ID_PATTERN, SCHEMA_VERSION, ContractError, QmsEvent, qms_topic

from .config import BridgeConfig, ValueMaps

# Fixed namespace: ids must be the same on every host and release for the same vendor event.
EVENT_NAMESPACE = uuid.UUID("5b0f3f0e-8c57-5f4e-9a51-6861696c6f6e")
_ID_RE = re.compile(ID_PATTERN)
_TYPES = ("officer_login", "officer_logout", "ticket_called", "ticket_closed")


class MappingError(ValueError):
    """A vendor record that cannot become a QmsEvent. ``reason`` is a stable code."""

    def __init__(self, reason: str, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.reason = reason
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class NotServed:
    """A close the vendor's status says was not a service (cancelled, transferred): understood,
    and deliberately not published (maps.statuses)."""

    type: str
    ticket: str | None
    status: str

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "ticket": self.ticket, "status": self.status}


@dataclass(frozen=True)
class Mapped:
    """One event ready for the outbox."""

    event: QmsEvent
    topic: str

    @property
    def event_id(self) -> str:
        assert self.event.event_id is not None
        return self.event.event_id


def dig(record: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (``ticket.number``; a numeric part indexes a list); None if absent."""
    node: Any = record
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def to_epoch_ms(value: Any, zone: zoneinfo.ZoneInfo, *, epoch_unit: str = "ms",
                time_format: str | None = None) -> int:
    """A vendor time -> UTC epoch ms. Naive times are local time in ``zone`` (the centre's)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        try:
            return round(value * 1000) if epoch_unit == "s" else int(value)
        except (OverflowError, ValueError):  # inf, nan: not a time (strict JSON refuses them earlier)
            raise ValueError(f"{value!r} is not a time") from None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty time")
        parsed = (dt.datetime.strptime(text, time_format) if time_format
                  else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        value = parsed
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            # fold=0: in an ambiguous local hour take the first; Vietnam has no DST anyway
            value = value.replace(tzinfo=zone)
        return int(value.timestamp() * 1000)
    raise ValueError(f"{value!r} is not a time (ISO 8601, epoch number or datetime)")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def event_key(centre: str, event_type: str, ticket_id: str | None, ticket: str | None, counter: str,
              officer: str, at_ms: int, zone: zoneinfo.ZoneInfo) -> str:
    """The vendor identity of an event, the input of its deterministic id."""
    if event_type.startswith("ticket_"):
        if ticket_id:
            who = f"id={ticket_id}"
        else:
            # numbers restart every morning: without a vendor id the service day disambiguates
            day = dt.datetime.fromtimestamp(at_ms / 1000, zone).date().isoformat()
            who = f"no={ticket}|day={day}"
        return f"v{SCHEMA_VERSION}|{centre}|{event_type}|{who}|at={at_ms}"
    return f"v{SCHEMA_VERSION}|{centre}|{event_type}|counter={counter}|officer={officer}|at={at_ms}"


def event_id_for(key: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, key))


class Mapper:
    """Turns vendor records into QmsEvents for one centre."""

    def __init__(self, cfg: BridgeConfig) -> None:
        self.centre = cfg.centre
        self.zone = cfg.zone
        self.db_zone = cfg.db_zone
        self.maps: ValueMaps = cfg.maps
        self.webhook = cfg.webhook

    def _code(self, field: str, value: Any, table: dict[str, str], reason: str) -> str:
        text = _text(value)
        if text is None:
            raise MappingError(f"missing_{field}", field, "missing in the vendor record")
        if table:
            if text not in table:
                raise MappingError(reason, field, f"unknown {field} {text!r} (not in [maps.{field}s])")
            return table[text]
        if not _ID_RE.match(text):
            raise MappingError(reason, field, f"{text!r} is not an id {ID_PATTERN}; add it to [maps.{field}s]")
        return text

    def served(self, event_type: str, values: Mapping[Any, Any], status_mapped: bool) -> str | None:
        """The vendor status of a close when it says "not served" (the close is then no event), else None."""
        if event_type != "ticket_closed" or not status_mapped:
            return None
        text = _text(values.get("status"))
        if text is None:
            raise MappingError("missing_status", "status", "missing in the vendor record")
        verdict = self.maps.statuses.get(text)
        if verdict is None:
            raise MappingError("unknown_status", "status", f"unknown status {text!r} (not in [maps.statuses])")
        return text if verdict == "not_served" else None

    def build(self, event_type: str, values: Mapping[Any, Any], at_ms: int) -> Mapped:
        """Map resolved vendor values (our field names) to an event with its deterministic id."""
        counter = self._code("counter", values.get("counter"), self.maps.counters, "unknown_counter")
        officer = self._code("officer", values.get("officer"), self.maps.officers, "unknown_officer")
        ticket = _text(values.get("ticket"))
        if event_type.startswith("ticket_") and ticket is None:
            raise MappingError("missing_ticket", "ticket", f"required for {event_type}")
        service = None
        if _text(values.get("service")) is not None:
            service = self._code("service", values.get("service"), self.maps.services, "unknown_service")
        ticket_id = _text(values.get("ticket_id")) if ticket is not None else None
        key = event_key(self.centre, event_type, ticket_id, ticket, counter, officer, at_ms, self.zone)
        data = {"v": SCHEMA_VERSION, "type": event_type, "counter": counter, "officer": officer, "ticket": ticket,
                "ticket_id": ticket_id, "service": service, "dossier": _text(values.get("dossier")), "at": at_ms,
                "event_id": event_id_for(key)}
        try:
            event = QmsEvent.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err.get("loc", ())) or "record"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            raise MappingError("invalid_field", field, msg) from None
        try:
            topic = qms_topic(self.centre, counter)
        except ContractError as exc:  # pragma: no cover - counter already checked above
            raise MappingError("unknown_counter", "counter", exc.message) from None
        return Mapped(event, topic)

    # ------------------------------------------------------------------ webhook
    def from_webhook(self, body: Any) -> list[Mapped | NotServed]:
        """A vendor JSON body (one object, or a list of objects) -> events; all or nothing."""
        records = body if isinstance(body, list) else [body]
        if not records:
            raise MappingError("empty_body", "body", "an empty list carries no event")
        out = []
        for i, record in enumerate(records):
            where = f"[{i}]." if isinstance(body, list) else ""
            if not isinstance(record, dict):
                raise MappingError("malformed_json", f"{where}body", "each event must be a JSON object")
            try:
                out.append(self._one_webhook(record))
            except MappingError as exc:
                raise MappingError(exc.reason, where + exc.field, exc.problem) from None
        return out

    def _one_webhook(self, record: Mapping[str, Any]) -> Mapped | NotServed:
        fields = self.webhook.fields
        values = {name: dig(record, path) for name, path in fields.items()}
        vendor_type = _text(values.get("type"))
        if vendor_type is None:
            raise MappingError("missing_type", "type", f"no event type at {fields.get('type')!r}")
        event_type = self.webhook.types.get(vendor_type)
        if event_type is None:
            raise MappingError("unknown_type", "type", f"vendor event {vendor_type!r} is not in [webhook.types]")
        raw_at = values.get("at")
        if raw_at is None:
            raise MappingError("missing_at", "at", f"no event time at {fields.get('at')!r}")
        try:
            at_ms = to_epoch_ms(raw_at, self.zone, epoch_unit=self.webhook.epoch_unit,
                                time_format=self.webhook.time_format)
        except ValueError as exc:
            raise MappingError("bad_time", "at", str(exc)) from None
        status = self.served(event_type, values, "status" in fields)
        if status is not None:
            return NotServed(event_type, _text(values.get("ticket")), status)
        return self.build(event_type, values, at_ms)

    # ------------------------------------------------------------------ SQL
    def from_row(self, row: Mapping[str, Any], columns: Mapping[Any, str],
                 events: Mapping[Any, str]) -> list[Mapped | NotServed]:
        """One database row -> an event per non-null time column, in time order (a close the
        status says was not served is a NotServed, after the events)."""
        values = {name: row.get(col) for name, col in columns.items()}
        out: list[Mapped] = []
        skipped: list[NotServed] = []
        for event_type, time_col in events.items():
            raw = row.get(time_col)
            if raw is None:
                continue
            try:
                at_ms = to_epoch_ms(raw, self.db_zone)
            except ValueError as exc:
                raise MappingError("bad_time", time_col, str(exc)) from None
            status = self.served(event_type, values, "status" in columns)
            if status is not None:
                skipped.append(NotServed(event_type, _text(values.get("ticket")), status))
                continue
            out.append(self.build(event_type, values, at_ms))
        # called before closed when both happen in one row; equal times keep the contract's order
        out.sort(key=lambda m: (m.event.at, _TYPES.index(m.event.type)))
        return [*out, *skipped]
