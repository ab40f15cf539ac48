"""The wire contract: topics and payload models shared by device/ and ingest/.

This is the ONE module both sides import. It runs on a Raspberry Pi, so it
depends only on the standard library and pydantic. Every model is frozen and
rejects unknown fields: a misspelt field is a bug on the sender, not something
to silently ignore, because officers are scored on this data.

Parsers never raise anything but :class:`ContractError`, whose ``reason`` is a
stable machine code (stored in the ``rejected`` measurement) and whose
``field`` names the offending field when there is one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 1
TOPIC_PREFIX = "hl/v1"
ID_PATTERN = r"^[a-z0-9-]{1,32}$"
_ID_RE = re.compile(ID_PATTERN)
# Queue tickets look like "A-1024", "B012", "KT.15": printable, short, no spaces.
TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,31}$"
REASON_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Canonical UUID text (what str(uuid.UUID) prints, any case). The parser accepts
# exactly this and nothing looser (no braces, no urn:, no bare 32 hex), so the
# exported JSON Schema can say the same rule with a pattern.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# The queue system's own ticket identity (a row id, a UUID, "20251122-A001"):
# printable ASCII without spaces, so it survives every log, CSV and InfluxDB field.
VENDOR_TICKET_ID_PATTERN = r"^[!-~]{1,64}$"
# A device may not be called "qms": hl/v1/{centre}/qms/{counter} would then be
# ambiguous with hl/v1/{centre}/{device}/rating for a counter named "rating".
# Nor "web": hl/v1/{centre}/web/rating is where the web rating service (web/) publishes the
# ratings citizens give from their phones, under its own broker identity, never a terminal's.
WEB_DEVICE = "web"
RESERVED_DEVICE_IDS = frozenset({"qms", WEB_DEVICE})
# The counter a web rating names when its link was made before the ticket was called (a slip
# printed at issue): the ingest takes the counter, like the officer, from the ticket's QMS close.
WEB_ANY_COUNTER = "web"
# How a web rating's link reached the citizen (RatingEvent.source)
LinkSourceName = Literal["qr", "sms", "zalo", "terminal-qr"]
COMMENT_MAX_CHARS = 280
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
MAX_PAYLOAD_BYTES = 8192
# Timestamps are UTC epoch milliseconds. The lower bound is 0, not "recent":
# a Pi without RTC may boot at 1970 and the ingest corrects that using
# sent_at, boot_id and mono_ms. The upper bound catches seconds/us/ns mix-ups.
MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


class Refusal(ValueError):
    """A message refused with a stable reason code (stored on a ``rejected`` point), a text and the field.

    Two kinds, never mixed: :class:`ContractError` (the payload or topic is malformed: this
    module) and ``ingest.rejection.RuleRejection`` (well-formed, but a registry, ticket or clock
    rule refuses it).
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ContractError(Refusal):
    """A payload or topic that does not satisfy the contract."""


# --------------------------------------------------------------------------- ids and topics

def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a well-formed centre/device/counter id."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ContractError("bad_id", f"{what} {value!r} must match {ID_PATTERN}", field=what)
    return value


def validate_device_id(value: str) -> str:
    validate_id(value, "device")
    if value in RESERVED_DEVICE_IDS:
        raise ContractError("bad_id", f"device id {value!r} is reserved", field="device")
    return value


class TopicKind(StrEnum):
    RATING = "rating"
    STATUS = "status"
    CONFIG = "config"
    QMS = "qms"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed hailong topic. ``device`` is set for rating/status/config, ``counter`` for qms."""

    kind: TopicKind
    centre: str
    device: str | None = None
    counter: str | None = None

    def __str__(self) -> str:
        if self.kind is TopicKind.QMS:
            return f"{TOPIC_PREFIX}/{self.centre}/qms/{self.counter}"
        return f"{TOPIC_PREFIX}/{self.centre}/{self.device}/{self.kind.value}"


def rating_topic(centre: str, device: str) -> str:
    return str(Topic(TopicKind.RATING, validate_id(centre, "centre"), device=validate_device_id(device)))


def web_rating_topic(centre: str) -> str:
    """Where the web rating service publishes a centre's ratings (its ACL allows only these)."""
    return str(Topic(TopicKind.RATING, validate_id(centre, "centre"), device=WEB_DEVICE))


def status_topic(centre: str, device: str) -> str:
    return str(Topic(TopicKind.STATUS, validate_id(centre, "centre"), device=validate_device_id(device)))


def config_topic(centre: str, device: str) -> str:
    return str(Topic(TopicKind.CONFIG, validate_id(centre, "centre"), device=validate_device_id(device)))


def qms_topic(centre: str, counter: str) -> str:
    return str(Topic(TopicKind.QMS, validate_id(centre, "centre"), counter=validate_id(counter, "counter")))


# The QMS bridge's retained status: a DeviceStatus whose device is "qms-bridge", one level
# below the QMS topics so that neither hl/v1/+/qms/+ (terminals, ingest) nor
# hl/v1/+/+/status (device statuses) matches it.
QMS_BRIDGE_DEVICE = "qms-bridge"


def qms_bridge_status_topic(centre: str) -> str:
    return f"{TOPIC_PREFIX}/{validate_id(centre, 'centre')}/qms/bridge/status"


# every centre's bridge status (the ingest stores them as device_status, the admin reads them)
QMS_BRIDGE_STATUS_FILTER = f"{TOPIC_PREFIX}/+/qms/bridge/status"


def qms_bridge_status_centre(topic: str) -> str | None:
    """The centre of a bridge status topic, or None when ``topic`` is not one (a valid centre id)."""
    if not topic.endswith("/qms/bridge/status"):  # asked of every message: the cheap test first
        return None
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[3:] != ["qms", "bridge", "status"]:
        return None
    return parts[2] if _ID_RE.fullmatch(parts[2]) else None


def subscription(kind: TopicKind, centre: str = "+", share_group: str | None = None) -> str:
    """Wildcard filter for one topic kind, optionally as a ``$share`` subscription."""
    if centre != "+":
        validate_id(centre, "centre")
    base = (
        f"{TOPIC_PREFIX}/{centre}/qms/+"
        if kind is TopicKind.QMS
        else f"{TOPIC_PREFIX}/{centre}/+/{kind.value}"
    )
    if share_group:
        validate_id(share_group, "share_group")
        return f"$share/{share_group}/{base}"
    return base


def parse_topic(topic: str) -> Topic:
    """Parse a concrete topic; raise ContractError(reason="bad_topic") otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_PREFIX:
        raise ContractError("bad_topic", f"topic {topic!r} is not {TOPIC_PREFIX}/<centre>/<device>/<kind>")
    _, _, centre, middle, last = parts
    try:
        validate_id(centre, "centre")
        if middle == "qms":
            return Topic(TopicKind.QMS, centre, counter=validate_id(last, "counter"))
        kind = TopicKind(last)
        if kind is TopicKind.QMS:
            raise ValueError(last)
        if middle == WEB_DEVICE and kind is TopicKind.RATING:
            return Topic(kind, centre, device=WEB_DEVICE)  # the web service's ratings (no status, no config)
        return Topic(kind, centre, device=validate_device_id(middle))
    except ContractError as exc:
        raise ContractError("bad_topic", f"topic {topic!r}: {exc.message}", field=exc.field) from None
    except ValueError:
        raise ContractError("bad_topic", f"topic {topic!r}: unknown kind {last!r}") from None


# --------------------------------------------------------------------------- field types

Id = Annotated[str, Field(pattern=ID_PATTERN, description="Identifier [a-z0-9-]{1,32}")]
TicketNo = Annotated[str, Field(pattern=TICKET_PATTERN, description="Queue ticket number, e.g. A-1024")]
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS, description="UTC epoch milliseconds")]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]
ReasonCode = Annotated[str, Field(pattern=REASON_PATTERN)]
Uuid = Annotated[str, Field(pattern=UUID_PATTERN, description="UUID, canonical 8-4-4-4-12 hex form")]
VendorTicketId = Annotated[
    str, Field(pattern=VENDOR_TICKET_ID_PATTERN, description="The QMS's own ticket identity (printable, <= 64)")
]


class _Message(BaseModel):
    # strict: "5" is not 5, 1.0 is not 1 -- a sender that gets types wrong
    # should be told, not guessed at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = Field(description="Schema version of this payload")

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode("utf-8")


class SatisfactionClass(StrEnum):
    """The three classes official reports use (766/QĐ-TTg, SIPAS)."""

    VERY_SATISFIED = "very_satisfied"  # Rất hài lòng
    SATISFIED = "satisfied"  # Hài lòng (includes "Bình thường")
    NOT_SATISFIED = "not_satisfied"  # Không hài lòng


def satisfaction_class(score: int, scale: int) -> SatisfactionClass:
    """Map a score on a 3/4/5-level scale to its legal class.

    The top score is "Rất hài lòng". On 3 and 4 levels only the lowest score is
    "Không hài lòng"; on 5 levels the two lowest (Không / Rất không hài lòng).
    """
    if scale not in (3, 4, 5) or not 1 <= score <= scale:
        raise ContractError("invalid_field", f"score {score} is not within scale {scale}", field="score")
    if score == scale:
        return SatisfactionClass.VERY_SATISFIED
    not_satisfied_max = 2 if scale == 5 else 1
    if score <= not_satisfied_max:
        return SatisfactionClass.NOT_SATISFIED
    return SatisfactionClass.SATISFIED


class RatingEvent(_Message):
    """One citizen's rating of the ticket just served at a counter."""

    event_id: Uuid = Field(description="UUID (v7 preferred), unique per rating")
    seq: int = Field(ge=0, description="Device-monotonic sequence number")
    device: Id = Field(description="Device id; must equal the device in the topic")
    centre: Id = Field(description="Centre id; must equal the centre in the topic")
    counter: Id = Field(description="Counter (quầy) id the device is assigned to")
    officer: Id = Field(description="Officer (cán bộ) logged in at the counter")
    ticket: TicketNo | None = Field(description="Queue ticket number, null for a walk-up rating")
    ticket_id: VendorTicketId | None = Field(
        default=None, description="The QMS's ticket identity from the close this rating answers (optional)"
    )
    service: Id | None = Field(default=None, description="Service area / procedure code (lĩnh vực)")
    dossier: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Dossier code (mã hồ sơ)")
    scale: Literal[3, 4, 5] = Field(description="Number of levels on the device's scale")
    score: int = Field(ge=1, le=5, description="1..scale, higher is better")
    reasons: tuple[ReasonCode, ...] = Field(default=(), max_length=12, description="Reason codes for a low score")
    input: Literal["touch", "button", "web"] = Field(
        description="How the rating was given: at the terminal (touch, button) or later from a phone (web)")
    source: LinkSourceName | None = Field(
        default=None, description="web only: how the link reached the citizen (slip QR, SMS, Zalo, terminal QR)")
    service_day: Annotated[str, Field(pattern=DAY_PATTERN)] | None = Field(
        default=None, description="web only: the ticket's service day (centre's local date) from the link")
    link_expires_at: EpochMs | None = Field(
        default=None, description="web only: until when the link could be used (the ingest re-checks it)")
    comment: Annotated[str, Field(min_length=1, max_length=COMMENT_MAX_CHARS)] | None = Field(
        default=None, description="web only: the citizen's short comment (never shown publicly)")
    closed_at: EpochMs | None = Field(
        description="When the ticket was closed (null for walk-up; a web rating may not know it)")
    rated_at: EpochMs = Field(description="When the citizen rated, device clock")
    sent_at: EpochMs = Field(description="When the device published this message, device clock")
    boot_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="Device boot identifier")
    mono_ms: int = Field(ge=0, description="Device monotonic clock at rated_at, ms since boot")

    @model_validator(mode="after")
    def _check(self) -> RatingEvent:
        if self.score > self.scale:
            raise ValueError(f"score: {self.score} exceeds scale {self.scale}")
        if self.ticket is None and self.closed_at is not None:
            raise ValueError("closed_at: must be null for a walk-up rating (ticket is null)")
        if self.ticket is not None and self.closed_at is None and self.input != "web":
            raise ValueError("closed_at: required when ticket is set")
        if self.input == "web":
            if self.device != WEB_DEVICE:
                raise ValueError(f"device: a web rating comes from device {WEB_DEVICE!r}")
            if self.ticket is None or self.service_day is None or self.link_expires_at is None:
                raise ValueError("ticket: a web rating names its ticket, service_day and link_expires_at")
        else:
            for name in ("source", "service_day", "link_expires_at", "comment"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only a web rating has it")
        if self.ticket is None and self.ticket_id is not None:
            raise ValueError("ticket_id: must be null for a walk-up rating (ticket is null)")
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("reasons: duplicate reason code")
        return self

    @property
    def walkup(self) -> bool:
        return self.ticket is None

    @property
    def satisfaction(self) -> SatisfactionClass:
        return satisfaction_class(self.score, self.scale)


class DeviceStatus(_Message):
    """Retained per-device status; the LWT is the same model with online=false."""

    device: Id = Field(description="Device id")
    centre: Id = Field(description="Centre id")
    online: bool = Field(description="False in the last-will message")
    outbox_depth: int = Field(default=0, ge=0, description="Ratings waiting in the device outbox")
    outbox_nearly_full: bool = Field(default=False, description="Outbox above its high-water mark")
    uptime_s: int = Field(default=0, ge=0, description="Seconds since the app started")
    cpu_temp_c: float | None = Field(default=None, ge=-40, le=150, description="SoC temperature if readable")
    version: Annotated[str, Field(max_length=32)] = Field(default="", description="hailong version")
    state: Annotated[str, Field(max_length=32)] | None = Field(default=None, description="UI state")
    at: EpochMs | None = Field(default=None, description="Device clock when sent; null in the LWT")


QmsEventType = Literal["officer_login", "officer_logout", "ticket_called", "ticket_closed"]


class QmsEvent(_Message):
    """An event from the queue system (QMS), bridged by an adapter."""

    type: QmsEventType = Field(description="What happened at the counter")
    counter: Id = Field(description="Counter id; must equal the counter in the topic")
    officer: Id = Field(description="Officer at the counter")
    ticket: TicketNo | None = Field(default=None, description="Ticket; required for ticket_* events")
    ticket_id: VendorTicketId | None = Field(
        default=None, description="The QMS's own ticket identity (unique across days), when it has one"
    )
    event_id: Uuid | None = Field(
        default=None, description="Event identity; a bridge derives it deterministically, so a replay keeps it"
    )
    service: Id | None = Field(default=None, description="Service area / procedure code")
    dossier: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Dossier code")
    at: EpochMs = Field(description="QMS clock, UTC epoch ms")

    @model_validator(mode="after")
    def _check(self) -> QmsEvent:
        if self.type.startswith("ticket_") and self.ticket is None:
            raise ValueError(f"ticket: required for {self.type}")
        if self.ticket is None and self.ticket_id is not None:
            raise ValueError("ticket_id: only with a ticket")
        return self


class DeviceConfigUpdate(_Message):
    """Retained admin -> device settings applied without restart. Absent fields are unchanged."""

    issued_at: EpochMs = Field(description="When the admin issued this update")
    language: Literal["vi", "en"] | None = Field(default=None, description="Default UI language")
    scale: Literal[3, 4, 5] | None = Field(default=None, description="Rating scale")
    rating_window_s: int | None = Field(default=None, ge=5, le=600, description="Seconds after close")
    prompt_timeout_s: int | None = Field(default=None, ge=5, le=300, description="Prompt screen timeout")
    officer_names: dict[Id, ShortText] | None = Field(default=None, description="Officer id -> display name")
    centre_name: ShortText | None = Field(default=None, description="Centre display name")
    reasons: tuple[ReasonCode, ...] | None = Field(default=None, description="Reason codes offered")


# --------------------------------------------------------------------------- parsing

M = TypeVar("M", bound=_Message)


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = str(err.get("msg", "invalid"))
    if not loc and msg.startswith("Value error, "):
        # model-level validators name their field as "field: message"
        msg = msg.removeprefix("Value error, ")
        field, _, rest = msg.partition(": ")
        return field, rest or msg
    return (loc or None), msg


def parse_payload(model: type[M], payload: bytes | str) -> M:
    """Decode and validate one payload. Raise ContractError with a stable reason.

    A valid payload (the common case, and the ingest's hot path) is parsed once,
    straight from JSON bytes; only a failing one is decoded again step by step to
    say precisely why: encoding, JSON syntax, shape, version, then the field.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError("payload_too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        # validated from JSON: strict mode then accepts arrays for tuples. The model's validator itself,
        # which is all model_validate_json calls: its Python wrapper cost 2.5 µs of 6.6 (issue 14)
        return cast(M, model.__pydantic_validator__.validate_json(payload))
    except ValidationError as exc:
        invalid = exc
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError("malformed_json", f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError("malformed_json", f"payload is not JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        # thousands of nested [ or { fit in 8 KiB; no contract payload nests more than 2 levels
        raise ContractError("malformed_json", "payload is not JSON we accept: nested too deeply") from None
    if not isinstance(data, dict):
        raise ContractError("malformed_json", f"payload must be a JSON object, got {type(data).__name__}")
    if "v" in data and data["v"] != SCHEMA_VERSION:
        raise ContractError(
            "unsupported_version", f"schema version {data['v']!r} is not supported (want {SCHEMA_VERSION})", "v"
        )
    field, msg = _first_error(invalid)
    where = f"{field}: " if field else ""
    raise ContractError("invalid_field", f"{model.__name__}.{where}{msg}", field=field)


def parse_rating(payload: bytes | str) -> RatingEvent:
    return parse_payload(RatingEvent, payload)


def parse_status(payload: bytes | str) -> DeviceStatus:
    return parse_payload(DeviceStatus, payload)


def parse_qms(payload: bytes | str) -> QmsEvent:
    return parse_payload(QmsEvent, payload)


def parse_config_update(payload: bytes | str) -> DeviceConfigUpdate:
    return parse_payload(DeviceConfigUpdate, payload)


def check_rating_topic(topic: Topic, event: RatingEvent) -> None:
    """The payload must name the same centre and device as the topic it came on."""
    if topic.kind is not TopicKind.RATING:
        raise ContractError("bad_topic", f"{topic} is not a rating topic")
    if event.device != topic.device:
        raise ContractError(
            "topic_mismatch", f"payload device {event.device!r} != topic device {topic.device!r}", "device"
        )
    if event.centre != topic.centre:
        raise ContractError(
            "topic_mismatch", f"payload centre {event.centre!r} != topic centre {topic.centre!r}", "centre"
        )


SCHEMA_MODELS: dict[str, type[_Message]] = {
    "rating_event": RatingEvent,
    "device_status": DeviceStatus,
    "qms_event": QmsEvent,
    "device_config_update": DeviceConfigUpdate,
}


def _when(field: str, condition: dict[str, Any], then: dict[str, dict[str, Any]],
          require: tuple[str, ...] = ()) -> dict[str, Any]:
    """``if <field> matches condition then <properties> must match``, as one allOf member."""
    then_schema: dict[str, Any] = {"properties": then}
    if require:
        then_schema["required"] = list(require)
    return {"if": {"properties": {field: condition}, "required": [field]}, "then": then_schema}


_NULL: dict[str, Any] = {"type": "null"}
# Cross-field rules the parser enforces in model validators, said in JSON Schema so a
# vendor's generic validator reaches the same verdict (tests/broker/test_contract_schema.py).
_CROSS_FIELD_RULES: dict[str, list[dict[str, Any]]] = {
    "rating_event": [
        *(_when("scale", {"const": n}, {"score": {"maximum": n}}) for n in (3, 4, 5)),
        _when("ticket", _NULL, {"closed_at": _NULL, "ticket_id": _NULL}),
        {"if": {"properties": {"ticket": {"type": "string"}, "input": {"enum": ["touch", "button"]}},
                "required": ["ticket", "input"]},
         "then": {"properties": {"closed_at": {"type": "integer"}}}},
        _when("input", {"const": "web"}, {"device": {"const": WEB_DEVICE}, "ticket": {"type": "string"},
                                           "service_day": {"type": "string"}, "link_expires_at": {"type": "integer"}},
              ("ticket", "service_day", "link_expires_at")),
        _when("input", {"enum": ["touch", "button"]},
              {"source": _NULL, "service_day": _NULL, "link_expires_at": _NULL, "comment": _NULL}),
    ],
    "qms_event": [
        _when("type", {"enum": ["ticket_called", "ticket_closed"]}, {"ticket": {"type": "string"}}, ("ticket",)),
        {"if": {"not": {"properties": {"ticket": {"type": "string"}}, "required": ["ticket"]}},
         "then": {"properties": {"ticket_id": _NULL}}},
    ],
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema per payload, for vendors validating without Python.

    It states every rule the parser enforces that JSON Schema can state. What it
    cannot: the 8 KiB size limit, UTF-8 and JSON syntax (a validator only sees parsed
    JSON), and strict integers (JSON Schema counts 1.0 as an integer, the parser not).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, model in SCHEMA_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        props = schema["properties"]
        if "reasons" in props and name == "rating_event":
            props["reasons"]["uniqueItems"] = True
        if name == "device_config_update":
            # pydantic emits patternProperties, which lets other keys through: name the keys' rule
            names = props["officer_names"]["anyOf"][0]
            names["propertyNames"] = {"pattern": ID_PATTERN}
            names["additionalProperties"] = False
        if name in _CROSS_FIELD_RULES:
            schema["allOf"] = _CROSS_FIELD_RULES[name]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://hailong.invalid/schemas/v{SCHEMA_VERSION}/{name}.json"
        out[name] = schema
    return out


def new_event_id() -> str:
    """UUIDv7 (time-ordered) as DESIGN.md prefers; stdlib gets uuid7 only in 3.14."""
    import os
    import time

    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return str(uuid.UUID(int=value))

