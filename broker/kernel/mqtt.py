"""MQTT connection settings and paho client construction, shared by device and ingest."""

from __future__ import annotations

import ssl
import urllib.parse
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
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


def make_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A paho 2.x client with credentials and TLS applied (not yet connected)."""
    proto = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
    kwargs: dict[str, object] = {}
    if proto == mqtt.MQTTv311:
        kwargs["clean_session"] = False
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kwargs  # type: ignore[arg-type]
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.secret())
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.tls_insecure_set(settings.tls_insecure)
    return client
