"""Ingest service configuration (TOML + env overrides ``HAILONG_INGEST__...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from broker.kernel.settings import SettingError, Settings, load_model
from broker.mqtt.settings import MqttSettings
from storage.connection import InfluxConnection

# The ingest's [influx] section is the shared connection model (storage/connection.py).


class BatchSettings(Settings):
    """Batching and back-pressure."""

    size: int = Field(default=500, ge=1, le=50_000, description="Flush when this many points are buffered")
    max_delay_ms: int = Field(default=200, ge=1, le=60_000, description="Flush at most this long after first")
    max_in_flight: int = Field(
        default=2000,
        ge=1,
        le=65_535,
        description="Un-acked messages the broker may hand us (MQTT5 receive-maximum); bounds memory",
    )
    max_unacked_messages: int = Field(
        default=2000, ge=1, le=1_000_000,
        description="Our own bound on messages received and not yet acked (queued, judged, written, held); "
                    "when reached, the ingest stops reading from the broker until acks free it")
    max_unacked_bytes: int = Field(
        default=32 * 1024 * 1024, ge=64 * 1024,
        description="The same bound in payload bytes (the broker caps one payload at the contract's limit)")
    retry_initial_ms: int = Field(default=200, ge=10, description="First retry delay after a failed write")
    retry_max_ms: int = Field(default=5000, ge=100, description="Longest retry delay")

    @model_validator(mode="after")
    def _check(self) -> BatchSettings:
        if self.max_in_flight < self.size:
            raise SettingError("max_in_flight", "must be >= batch.size, or a batch can never fill")
        if self.max_unacked_messages < self.size:
            raise SettingError("max_unacked_messages", "must be >= batch.size, or a batch can never fill")
        return self


class PartitionSettings(Settings):
    """Which centres' ratings this instance judges: a ticket's ratings must meet one judge."""

    index: int = Field(default=0, ge=0, le=255, description="This instance's partition, 0 <= index < count")
    count: int = Field(default=1, ge=1, le=256,
                       description="Number of partitions; the sorted centres are dealt round-robin")

    # Set by the supervisor (ingest/workers.py) through env for each worker process, never by hand:
    # an instance's partition is divided among its workers (global partition = instance x worker).
    worker_index: int = Field(default=0, ge=0, le=63,
                              description="Set by `hailong ingest run` for each worker process, not by hand: "
                                          "this worker's share of the instance's partition, < worker_count")
    worker_count: int = Field(default=1, ge=1, le=64,
                              description="Set by `hailong ingest run` for each worker process, not by hand: "
                                          "the instance's partition is dealt among this many workers")
    drain: bool = Field(default=False,
                        description="Set by `hailong ingest run`, not by hand: this process owns no centres; it "
                                    "stores what waits in the session of a worker that a lower `workers` removed, "
                                    "then ends that session")

    @model_validator(mode="after")
    def _check(self) -> PartitionSettings:
        if self.index >= self.count:
            raise SettingError("index", f"{self.index} must be < count {self.count}")
        if self.worker_index >= self.worker_count and not self.drain:
            raise SettingError("worker_index", f"{self.worker_index} must be < worker_count {self.worker_count}")
        return self


class IntegritySettings(Settings):
    """Ticket integrity: which ratings count toward an officer's score."""

    rating_window_s: int = Field(
        default=60, ge=1, le=3600, description="A rating must follow its ticket close by at most this"
    )
    early_tolerance_s: int = Field(
        default=5, ge=0, le=600, description="Rated this long before the close still counts (QMS vs device clocks)"
    )
    hold_grace_s: float = Field(
        default=10.0, ge=0, le=300,
        description="Hold a rating whose ticket_closed has not arrived yet this long before unknown_ticket",
    )
    web_hold_s: float = Field(
        default=900.0, ge=0, le=3600,
        description="Hold a web rating (a slip's QR scanned while waiting) this long for its ticket_closed before "
                    "unknown_ticket")
    web_window_s: int = Field(
        default=8 * 86_400, ge=3600, le=31 * 86_400,
        description="A web rating must follow its ticket's close by at most this (the link's own expiry, default "
                    "7 days after the service day, is checked too): later is link_expired")
    tickets_per_counter: int = Field(
        default=512, ge=16, le=100_000, description="Recent tickets remembered per counter (bounds memory)"
    )
    tickets_archived: int = Field(
        default=20_000, ge=100, le=1_000_000,
        description="Older ticket instances remembered beside the recent ones (oldest out first; bounds memory): "
                    "those a late web rating needed, looked up in InfluxDB, and rated ones pushed out of the recent "
                    "tickets")
    index_lookback_s: int = Field(
        default=24 * 3600, ge=60, le=31 * 24 * 3600,
        description="At start, rebuild the ticket index from ticket and rating points this recent",
    )
    reclose_window_s: int = Field(
        default=3600, ge=60, le=86_400,
        description="A close of the same number, same service day, this soon after the first is a recall/re-close "
                    "of that ticket (served once); later it is a new ticket (the numbering wrapped)",
    )
    events_remembered: int = Field(
        default=100_000, ge=1000, le=5_000_000,
        description="Rating event_ids remembered with their content hash (conflicting resends, idempotent redelivery)",
    )
    escalate_within_s: int = Field(
        default=3600, ge=60, le=366 * 86_400,
        description="Escalate a newly accepted 'Không hài lòng' only if it arrives within this long of being "
                    "rated: the alert is for a citizen who may still be in the building; a backlog after a long "
                    "outage or a replayed history is stored, counted and told by the lower-severity alert "
                    "'Không hài lòng nhận muộn' (one message per centre), not paged as urgent")
    # Sized for a terminal draining its outbox after an outage while its QMS bridge lags a few
    # seconds behind (a rating then arrives before its close): 20 and 1/s refused legal ratings
    # in that case. A flooding device is still bounded: at most this many held, each for
    # hold_grace_s, re-checked once per batch.
    max_held_per_device: int = Field(
        default=200, ge=1, le=10_000,
        description="Ratings one device may have waiting for their ticket_closed; more is hold_budget_exceeded",
    )
    hold_rate_per_s: float = Field(
        default=20.0, gt=0, le=1000,
        description="New holds per second a device may start (token bucket refill); more is hold_budget_exceeded",
    )
    hold_burst: int = Field(default=200, ge=1, le=10_000, description="Token bucket size for new holds per device")
    partition: PartitionSettings = Field(
        default_factory=PartitionSettings,
        description="Partitioned rating subscriptions across ingest instances (duplicate_ticket holds across them)",
    )


class ClockSettings(Settings):
    """Device clock correction (sent_at vs the time we received the message)."""

    max_ahead_s: int = Field(
        default=120, ge=1, le=86_400, description="A device clock this far ahead of ours is corrected"
    )
    min_plausible_ms: int = Field(
        default=1_577_836_800_000, ge=0, description="sent_at before this (2020-01-01) means an unset clock"
    )
    max_outbox_age_s: int = Field(
        default=31 * 86_400, ge=60, description="sent_at - rated_at beyond this is an absurd timestamp"
    )
    max_age_s: int = Field(
        default=400 * 86_400, ge=60, description="A (corrected) rated_at older than this is rejected as absurd"
    )


class HealthSettings(Settings):
    """Liveness and self-metrics."""

    http_port: int | None = Field(
        default=None, ge=0, le=65_535, description="Serve GET /healthz on 127.0.0.1:<port>; 0 = any free port"
    )
    stats_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="Write an ingest_stats point and log the counters this often"
    )
    stale_after_s: float = Field(
        default=30.0, gt=0, le=3600, description="Unhealthy when the worker loop has not turned for this long"
    )


DEFAULT_CLIENT_ID = "hl-ingest-1"  # only when there is no mqtt.username (development broker)


class IngestMqttSettings(MqttSettings):
    """The ingest's broker connection: the shared model, with reconnect defaults for a handful of clients.

    A province has thousands of terminals but a few ingest workers; their reconnects cost the
    broker nothing, and every second they are late after a broker restart is a second the whole
    fleet's ratings wait in the broker (bench/fleet_storm.py). So they come back first.
    """

    reconnect_spread_s: float = Field(
        default=1.0, ge=0, le=300,
        description="After an established connection is lost, the first attempt waits a random 0..this many "
                    "seconds (the ingest is a few clients: it should be back before the terminals)")
    reconnect_min_s: float = Field(
        default=0.5, gt=0, le=300,
        description="Shortest wait after a failed attempt, seconds (random up to a ceiling doubling to "
                    "reconnect_max_s)")
    reconnect_max_s: float = Field(
        default=2.0, gt=0, le=3600,
        description="Longest wait between attempts, seconds: small, so the ingest stores the fleet's queued "
                    "ratings as soon as the broker is back (its few clients add nothing to a restart storm)")


class IngestConfig(Settings):
    """Top level of ingest.toml."""

    mqtt: IngestMqttSettings = Field(default_factory=IngestMqttSettings, description="Broker connection")
    influx: InfluxConnection = Field(default_factory=InfluxConnection, description="InfluxDB connection")
    batch: BatchSettings = Field(default_factory=BatchSettings, description="Batching")
    client_id: str = Field(
        default=DEFAULT_CLIENT_ID,
        description="Stable MQTT client id (names the persistent session); defaults to mqtt.username, "
                    "because the rendered broker forces client id = username (issue 12)")
    share_group: str | None = Field(
        default="hl-ingest", description="$share group for statuses (and ratings with ratings_shared); null "
        "subscribes directly"
    )
    ratings_shared: bool = Field(
        default=False,
        description="Read ratings through the $share group, so several instances of one partition split them and "
        "take over from each other. Off by default: Mosquitto 2.0.11 does not restore a shared subscription after "
        "a broker restart, and ratings published before the ingest subscribes again are dropped by the broker "
        "(a direct subscription in the persistent session is restored and queues them)",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=0, description="How long the broker keeps our session while we are down"
    )
    province: str = Field(default="unknown", description="Province tag when no registry entry says otherwise")
    registry: Path | None = Field(
        default=None, description="Fleet registry directory (firmware_config); null = no registry check (dev only)"
    )
    registry_poll_s: float = Field(
        default=10.0, ge=0, description="Reload the registry when its files change, checked this often; 0 = only SIGHUP"
    )
    integrity: IntegritySettings = Field(default_factory=IntegritySettings, description="Ticket integrity")
    clock: ClockSettings = Field(default_factory=ClockSettings, description="Clock correction")
    health: HealthSettings = Field(default_factory=HealthSettings, description="Liveness and self-metrics")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level")
    workers: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = Field(
        default="auto", description="Worker processes of one `hailong ingest run` (ingest/workers.py): 'auto' = one "
        "per core. Each judges a partition of the centres (a ticket's ratings always meet one judge) and logs in "
        "as its own broker user (<user>.w<k>, rendered by `hailong broker render`, ingest_workers)")
    worker_secrets_dir: Path | None = Field(
        default=None,
        description="Directory holding each worker user's password file, <user>.password (what `hailong broker "
        "render` writes to <fleet>/state/secrets/, one secret per worker, rotated alone). Worker k > 0 logs in "
        "with its own file; `hailong ingest run` refuses to start more workers than this directory has users. "
        "Unset: every worker uses mqtt's password (a development broker whose workers share it)")

    @model_validator(mode="before")
    @classmethod
    def _client_id_is_username(cls, data: Any) -> Any:
        # the broker names our session after the username anyway; the same name in ingest_stats
        if isinstance(data, dict) and not data.get("client_id"):
            mqtt = data.get("mqtt")
            user = mqtt.get("username") if isinstance(mqtt, dict) else getattr(mqtt, "username", None)
            if user:
                return {**data, "client_id": user}
        return data


def _resolve_relative(cfg: IngestConfig, base: Path) -> IngestConfig:
    """A relative registry (or worker secrets) path in ingest.toml means relative to that file, not to the cwd."""
    for key in ("registry", "worker_secrets_dir"):
        value = getattr(cfg, key)
        if value is not None and not value.is_absolute():
            cfg = cfg.model_copy(update={key: (base / value).resolve()})
    return cfg


def load_config(path: Path | str | None, environ: dict[str, str] | None = None) -> IngestConfig:
    cfg = load_model(IngestConfig, path, "HAILONG_INGEST", environ)
    return _resolve_relative(cfg, Path(path).parent if path is not None else Path.cwd())
