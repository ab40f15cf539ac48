"""MQTT connection settings, shared by device and ingest (the client itself: broker.mqtt.session)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from broker.kernel.settings import SecretFile, SettingError, Settings

from .backoff import Backoff


class MqttSettings(Settings):
    """How to reach the broker."""

    url: str = Field(
        default="mqtts://localhost:8883",
        description="Broker URL: mqtt://host:port (plain, loopback/dev only) or mqtts://host:port (TLS)",
    )
    username: str | None = Field(default=None, description="MQTT username (device id for devices)")
    password: SecretStr | None = Field(default=None, description="MQTT password; prefer env or password_file")
    password_file: SecretFile = Field(default=None, description="File whose first line is the password")
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker (TLS)")
    cert_file: Path | None = Field(default=None, description="Client certificate (TLS client auth)")
    key_file: Path | None = Field(default=None, description="Client private key (TLS client auth)")
    tls_insecure: bool = Field(default=False, description="Skip hostname check (lab use only)")
    keepalive_s: int = Field(default=30, ge=5, le=600, description="MQTT keepalive interval, seconds")
    protocol: Literal["3.1.1", "5"] = Field(default="5", description="MQTT protocol version")
    # Reconnects are a fleet's (docs/fleet.md, "Reconnects"): the defaults bring 2,000 terminals
    # back within 20 s of a province broker's restart without overflowing its listen queue.
    reconnect_spread_s: float = Field(
        default=5.0, ge=0, le=300,
        description="After an established connection is lost, the first attempt waits a random 0..this many "
                    "seconds, so a fleet that lost the broker together does not knock together")
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=300,
        description="Shortest wait after a failed attempt, seconds (each wait is random between this and a "
                    "ceiling that doubles from twice this value up to reconnect_max_s)")
    reconnect_max_s: float = Field(
        default=12.0, gt=0, le=3600,
        description="Longest wait between attempts, seconds: the most a client can miss a broker that is "
                    "back. Sized for a province broker: 2,000 clients at up to 12 s spread their handshakes "
                    "to ~300 per second")
    connect_timeout_s: float = Field(
        default=15.0, ge=1, le=120,
        description="Give up one TCP connect or TLS handshake after this many seconds. Longer than Linux's "
                    "SYN retransmits at +1, +3 and +7 s, so a SYN the broker's full listen queue dropped "
                    "is retried by TCP itself instead of counting as a failed attempt")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urllib.parse.urlparse(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError(f"{v!r} must look like mqtt://host:port or mqtts://host:port")
        return v

    @model_validator(mode="after")
    def _reconnect(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise SettingError("reconnect_min_s", f"{self.reconnect_min_s} is more than reconnect_max_s "
                                                  f"({self.reconnect_max_s})")
        return self

    def backoff(self) -> Backoff:
        """A fresh reconnect schedule for one client (each client owns its own random state)."""
        return Backoff(self.reconnect_min_s, self.reconnect_max_s, self.reconnect_spread_s)

    @property
    def host(self) -> str:
        return urllib.parse.urlparse(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        u = urllib.parse.urlparse(self.url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urllib.parse.urlparse(self.url).scheme == "mqtts"

    def secret(self) -> str | None:
        """The password: inline (env), else password_file's first line (read at load), else None."""
        return self.secret_of("password")

