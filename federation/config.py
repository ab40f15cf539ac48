"""``federation.toml``: how a province server publishes its daily aggregates (``hailong federation publish``).

Loaded through broker.kernel.settings (TOML + ``HAILONG_FEDERATION__...`` env + ``*_file``
secrets), so a bad value stops the command naming the file, the key and the problem.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from broker.contract import ID_PATTERN
from broker.kernel.settings import Settings, load_model
from broker.mqtt.settings import MqttSettings
from storage.connection import InfluxConnection

FEDERATION_USER = "svc.federation"  # the publisher's broker user on the province broker (write fed/# only)


class FederationConfig(Settings):
    """Top level of federation.toml (province server)."""

    province: str = Field(pattern=ID_PATTERN, description="This province's id, as the national broker knows it "
                          "(its bridge certificate is fed.<province>)")
    registry: Path = Field(description="Fleet registry directory: its centres of this province are the centres "
                           "reported, one message per centre and day, zero days included")
    mqtt: MqttSettings = Field(default_factory=lambda: MqttSettings(username=FEDERATION_USER),
                               description="The province broker (user svc.federation, rendered by "
                               "`hailong broker render` when broker.toml has a [federation] section)")
    influx: InfluxConnection = Field(default_factory=InfluxConnection,
                                     description="The province's InfluxDB (its daily rollups are read)")
    dashboards: Path | None = Field(default=None, description="The province's dashboards.toml: the rollups are "
                                    "recomputed with its time zone and reason codes (null = defaults)")
    backfill: bool = Field(default=True, description="Recompute the daily rollups of the window before reading "
                           "them, so ratings that arrived late (an offline terminal) are counted")
    client_id: str = Field(default=FEDERATION_USER, description="MQTT client id (the broker forces it to the "
                           "username anyway)")
    ack_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                 description="How long to wait for the broker to acknowledge every message")

    @field_validator("registry", "dashboards")
    @classmethod
    def _relative(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        # relative to the config file, as the ingest's registry path is; read (and checked) when used
        base = (info.context or {}).get("base_dir")
        if v is not None and not v.is_absolute() and base is not None:
            v = (Path(base) / v).resolve()
        return v


def load_config(path: Path | str | None, environ: dict[str, str] | None = None) -> FederationConfig:
    return load_model(FederationConfig, path, "HAILONG_FEDERATION", environ)
