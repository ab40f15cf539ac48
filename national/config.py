"""``national.toml``: the national consumer's configuration (``hailong national consume``).

Same conventions as ingest.toml: TOML + ``HAILONG_NATIONAL__...`` env overrides + ``*_file``
secrets through broker.kernel.settings, unknown keys refused, a bad value stops the program
at start naming the file, the key and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from broker.kernel.settings import Settings, load_model
from broker.mqtt.settings import MqttSettings
from storage.connection import InfluxConnection

NATIONAL_USER = "svc.national"  # the consumer's user on the national broker (read national/#)


class NationalBatch(Settings):
    """Batching: how many aggregates are written (and then acknowledged) together."""

    size: int = Field(default=2000, ge=1, le=50_000, description="Write when this many messages are waiting")
    max_delay_ms: int = Field(default=200, ge=1, le=60_000, description="Write at most this long after the first")
    receive_maximum: int = Field(default=5000, ge=1, le=65_535,
                                 description="Un-acked messages the broker may hand us (MQTT 5); >= size")
    retry_initial_ms: int = Field(default=200, ge=10, description="First retry delay after a failed write")
    retry_max_ms: int = Field(default=5000, ge=100, description="Longest retry delay")


class NationalHealth(Settings):
    """Liveness and self-metrics."""

    http_port: int | None = Field(default=None, ge=0, le=65_535,
                                  description="Serve GET /healthz on 127.0.0.1:<port>; 0 = any free port")
    stats_interval_s: float = Field(default=30.0, gt=0, le=3600,
                                    description="Write a national_stats point and log the counters this often")
    stale_after_s: float = Field(default=30.0, gt=0, le=3600,
                                 description="Unhealthy when the writer loop has not turned for this long")


class NationalConfig(Settings):
    """Top level of national.toml (the Ministry's server)."""

    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings(username=NATIONAL_USER),
                               description="The national broker (user svc.national, from `hailong national render`)")
    influx: InfluxConnection = Field(default_factory=lambda: InfluxConnection(database="hailong_national"),
                                     description="The national InfluxDB (agg_centre_day, agg_rejected)")
    centres: Path = Field(description="centres.json from `hailong national render`: which centre belongs to "
                          "which province; an aggregate of any other centre is refused")
    centres_poll_s: float = Field(default=10.0, ge=0, description="Re-read centres.json when it changes, "
                                  "checked this often; 0 = only at start")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="IANA zone of the service days: a centre-day "
                          "point is stamped at its local midnight (weeks and months of the national dashboard)")
    client_id: str = Field(default=NATIONAL_USER, description="MQTT client id (names the persistent session)")
    session_expiry_s: int = Field(default=35 * 86_400, ge=0,
                                  description="How long the broker keeps our session (and queues) while we are down")
    lookback_days: int = Field(default=62, ge=1, le=3660,
                               description="At start, load the revisions of the centre-days this recent; an older "
                               "day's revision is read from InfluxDB when an aggregate for it arrives")
    batch: NationalBatch = Field(default_factory=NationalBatch, description="Batching")
    health: NationalHealth = Field(default_factory=NationalHealth, description="Liveness and self-metrics")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level")

    @field_validator("centres")
    @classmethod
    def _relative(cls, v: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")  # relative to national.toml, as the ingest's registry
        return (Path(base) / v).resolve() if not v.is_absolute() and base is not None else v


def load_config(path: Path | str | None, environ: dict[str, str] | None = None) -> NationalConfig:
    return load_model(NationalConfig, path, "HAILONG_NATIONAL", environ)
