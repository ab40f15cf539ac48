"""Bridge configuration: one ``qms.toml`` per queue system (QMS) of a centre.

Loaded with :func:`broker.kernel.settings.load_model`, so a mistake is reported as
``config error in FILE: KEY: problem`` before anything starts. Secrets (the MQTT
password, the webhook secret, the database password) come from env
(``HAILONG_QMS__SECTION__KEY``) or from ``*_file`` keys, never from the TOML itself.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from broker.contract import ID_PATTERN, QmsEventType
from broker.identities import qms_user
from broker.kernel.settings import SecretFile, Settings, load_model
from broker.mqtt.settings import MqttSettings

ENV_PREFIX = "HAILONG_QMS"
# Our fields a vendor record can fill. ``type`` is only mapped for the webhook: a SQL
# source says which event each of its time columns stands for.
MappedField = Literal["type", "counter", "officer", "ticket", "ticket_id", "service", "dossier", "at", "status"]
# What a vendor's ticket status says about a close: served (published as ticket_closed) or not
# (cancelled, transferred, no-show: never a ticket_closed, so never rated or counted as served)
Served = Literal["served", "not_served"]
_SQL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class _Section(Settings):
    """The shared settings base (unknown keys refused, frozen, secret files read at load)."""


def _sql_name(value: str, what: str) -> str:
    # identifiers are quoted by SQLAlchemy, but a plain name rule also keeps typos out
    if not _SQL_NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a plain SQL identifier")
    return value


class ValueMaps(_Section):
    """Vendor codes -> our ids. An empty map passes the vendor's value through (it must then be a valid id)."""

    counters: dict[str, Any] = Field(default_factory=dict, description="Vendor counter code -> our counter id")
    officers: dict[str, Any] = Field(default_factory=dict, description="Vendor officer/staff code -> officer id")
    services: dict[str, Any] = Field(default_factory=dict, description="Vendor service code -> service id")
    statuses: dict[str, Served] = Field(
        default_factory=dict,
        description="Vendor ticket status -> served or not_served, when a status column/field is mapped "
        "(columns.status / webhook.fields.status): a ticket_closed whose status is not_served (cancelled, "
        "transferred) is never published; a status not listed holds the row as a mapping error")

    @field_validator("counters", "officers", "services")
    @classmethod
    def _ids(cls, v: dict[str, Any]) -> dict[str, str]:
        for key, target in v.items():
            if not isinstance(target, str) or not re.match(ID_PATTERN, target):
                raise ValueError(f"{key!r} maps to {target!r}, which is not an id {ID_PATTERN}")
        return {str(k): str(t) for k, t in v.items()}


class WebhookSettings(_Section):
    """The HTTP callback the vendor's software calls on each event."""

    enabled: bool = Field(default=False, description="Serve POST {path} for the vendor")
    path: str = Field(default="/qms/events", pattern=r"^/[A-Za-z0-9/_.-]*$", description="URL path of the callback")
    auth: Literal["shared_secret", "hmac_sha256"] = Field(
        default="hmac_sha256",
        description="shared_secret: header equals the secret; hmac_sha256: header is hex HMAC-SHA256 of the body",
    )
    header: str | None = Field(
        default=None, description="Header carrying the secret or signature (default X-Hailong-Secret / "
        "X-Hailong-Signature); a 'sha256=' prefix on signatures is accepted")
    secret: SecretStr | None = Field(default=None, description="The shared secret / HMAC key; prefer env or file")
    secret_file: SecretFile = Field(default=None, description="File whose first line is the secret")
    max_body_bytes: int = Field(default=16_384, ge=256, le=1_048_576, description="Larger bodies get 413")
    fields: dict[MappedField, str] = Field(
        default_factory=dict, description="Our field -> dotted JSON path in the vendor body, e.g. ticket.number"
    )
    types: dict[str, QmsEventType] = Field(
        default_factory=dict, description="Vendor event name -> our event type (ticket_closed, ...)"
    )
    time_format: str | None = Field(
        default=None, description="strptime format of 'at' when it is not ISO 8601 or epoch"
    )
    epoch_unit: Literal["s", "ms"] = Field(default="ms", description="Unit of a numeric 'at'")

    @property
    def header_name(self) -> str:
        if self.header:
            return self.header
        return "X-Hailong-Secret" if self.auth == "shared_secret" else "X-Hailong-Signature"

    @model_validator(mode="after")
    def _check(self) -> WebhookSettings:
        if self.enabled:
            for needed in ("type", "counter", "officer", "at"):
                if needed not in self.fields:
                    raise ValueError(f"fields.{needed}: required (dotted path in the vendor's JSON)")
            if not self.types:
                raise ValueError("types: map at least one vendor event name to an event type")
            if self.secret is None and self.secret_file is None:
                raise ValueError("secret: required (set HAILONG_QMS__WEBHOOK__SECRET or secret_file)")
        return self

    def secret_value(self) -> str:
        value = self.secret_of("secret", key_prefix="webhook.")
        if not value:
            raise ValueError("webhook secret is empty")
        return value


class SqlSource(_Section):
    """One table (or view) read incrementally; each row yields one event per non-null time column."""

    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$", description="Name of the source (keys its high-water mark)")
    table: str = Field(description="Table or view to read")
    schema_name: str | None = Field(default=None, alias="schema", description="Database schema of the table")
    id_column: str = Field(description="Unique row id; the tie-breaker of the high-water mark")
    changed_column: str = Field(
        description="Column bumped on every change (updated_at) or, for append-only tables, the event time"
    )
    columns: dict[MappedField, str] = Field(description="Our field -> column (counter, officer, ticket, ...)")
    events: dict[QmsEventType, str] = Field(
        description="Event type -> time column; a row emits the event when that column is not null"
    )
    where: str | None = Field(
        default=None, description="Row filter: an SQL condition rows must meet to be read at all, e.g. "
        "\"status <> 'HUY'\" (cancelled tickets never read); rows it leaves out are traced at debug level")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)  # Settings' + the alias

    @model_validator(mode="after")
    def _check(self) -> SqlSource:
        _sql_name(self.table, "table")
        if self.schema_name:
            _sql_name(self.schema_name, "schema")
        for col in (self.id_column, self.changed_column, *self.columns.values(), *self.events.values()):
            _sql_name(col, "column")
        if "type" in self.columns or "at" in self.columns:
            raise ValueError("columns: 'type' and 'at' come from 'events' (event type -> time column)")
        for needed in ("counter", "officer"):
            if needed not in self.columns:
                raise ValueError(f"columns.{needed}: required")
        if any(t.startswith("ticket_") for t in self.events) and "ticket" not in self.columns:
            raise ValueError("columns.ticket: required for ticket_* events")
        if not self.events:
            raise ValueError("events: name at least one event type -> time column")
        return self

    @property
    def selected(self) -> list[str]:
        cols = [self.id_column, self.changed_column, *self.columns.values(), *self.events.values()]
        return list(dict.fromkeys(cols))


class SqlSettings(_Section):
    """Polling the vendor's database (SQLAlchemy) with a read-only user."""

    enabled: bool = Field(default=False, description="Poll the vendor's database")
    url: str = Field(default="", description="SQLAlchemy URL without password, e.g. "
                     "postgresql+psycopg://qms_ro@db/qms or mysql+pymysql://qms_ro@db/qms")
    password: SecretStr | None = Field(default=None, description="Database password; prefer env or password_file")
    password_file: SecretFile = Field(default=None, description="File whose first line is the password")
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=300, description="Seconds between polls")
    batch_size: int = Field(default=500, ge=1, le=50_000, description="Rows read per query")
    overlap_s: float = Field(
        default=5.0, ge=0, le=3600,
        description="Also re-read rows changed up to this long before the high-water mark (a transaction that "
        "committed late with an older timestamp); re-read rows are de-duplicated by event id")
    db_timezone: str | None = Field(
        default=None, description="Zone of naive timestamps in the database (default: the centre's zone)"
    )
    sources: list[SqlSource] = Field(default_factory=list, description="Tables to read")
    retry_held_s: float = Field(
        default=60, ge=1, le=86_400,
        description="Rows held for a mapping gap (an officer code not in the map, ...) are retried this often "
        "(and at start, on SIGHUP and on `hailong qms bridge held retry`); each still-failing row logs one "
        "ERROR per retry")

    @model_validator(mode="after")
    def _check(self) -> SqlSettings:
        if self.enabled:
            if not self.url:
                raise ValueError("url: required when sql.enabled")
            if not self.sources:
                raise ValueError("sources: at least one [[sql.sources]] table")
            names = [s.name for s in self.sources]
            if len(set(names)) != len(names):
                raise ValueError("sources: names must be unique")
        if self.db_timezone:
            _zone(self.db_timezone)
        return self

    def password_value(self) -> str | None:
        return self.secret_of("password", key_prefix="sql.")


class HttpSettings(_Section):
    """The bridge's HTTP server: /healthz always, the webhook when enabled."""

    host: str = Field(default="127.0.0.1", description="Listen address (the vendor's host must reach it)")
    port: int = Field(default=8787, ge=0, le=65535, description="Listen port (0: any free port, tests)")


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (want an IANA name like Asia/Ho_Chi_Minh)") from None


class BridgeConfig(_Section):
    """``hailong qms bridge --config qms.toml``."""

    centre: str = Field(pattern=ID_PATTERN, description="Centre id the QMS belongs to (topic hl/v1/{centre}/qms/...)")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="The centre's zone: local vendor times and "
                          "service days are read in it")
    outbox: Path = Field(default=Path("qms-outbox.sqlite3"), description="SQLite outbox and high-water marks")
    seen_days: int = Field(default=14, ge=1, le=366, description="Remember published event ids this long")
    status_interval_s: float = Field(default=60, ge=1, le=3600, description="Retained status refresh period")
    quiet_after_s: float = Field(default=1800, ge=10, description="/healthz flags a counter quiet after this long")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker; user defaults to svc.qms.<centre>")
    http: HttpSettings = Field(default_factory=HttpSettings, description="Health and webhook server")
    maps: ValueMaps = Field(default_factory=ValueMaps, description="Vendor code -> id maps")
    webhook: WebhookSettings = Field(default_factory=WebhookSettings, description="HTTP callback adapter")
    sql: SqlSettings = Field(default_factory=SqlSettings, description="SQL polling adapter")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _zone(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> BridgeConfig:
        if not (self.webhook.enabled or self.sql.enabled):
            raise ValueError("enable the webhook ([webhook] enabled = true) or SQL polling ([sql] enabled = true)")
        uses_status = "status" in self.webhook.fields or any("status" in s.columns for s in self.sql.sources)
        if uses_status and not self.maps.statuses:
            raise ValueError("maps.statuses: a status is mapped; list every status value the vendor uses, "
                             'e.g. { DONE = "served", HUY = "not_served" }')
        return self

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return _zone(self.timezone)

    @property
    def db_zone(self) -> zoneinfo.ZoneInfo:
        return _zone(self.sql.db_timezone or self.timezone)

    @property
    def mqtt_user(self) -> MqttSettings:
        """The MQTT settings with the centre's QMS identity (svc.qms.<centre>) unless another was given."""
        if self.mqtt.username:
            return self.mqtt
        return self.mqtt.model_copy(update={"username": qms_user(self.centre)})


def load_config(path: Path | str | None, environ: dict[str, str] | None = None,
                *, read_secrets: bool = True) -> BridgeConfig:
    cfg = load_model(BridgeConfig, path, ENV_PREFIX, environ, read_secrets=read_secrets)
    base = Path(path).parent if path else Path.cwd()
    if not cfg.outbox.is_absolute():
        cfg = cfg.model_copy(update={"outbox": base / cfg.outbox})
    return cfg
