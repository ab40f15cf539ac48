"""MQTT connection settings, shared by device and ingest (the client itself: broker.mqtt.session)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from broker.kernel.settings import SecretFile, Settings


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

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = urllib.parse.urlparse(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError(f"{v!r} must look like mqtt://host:port or mqtts://host:port")
        return v

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

