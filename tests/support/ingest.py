"""Start the real ingest service in-process against the session's servers."""

from __future__ import annotations

from typing import Any

from broker.mqtt import MqttSettings
from ingest.config import IngestConfig
from ingest.influxql import InfluxQL
from ingest.service import IngestService


def ingest_config(mqtt: MqttSettings, db: InfluxQL, uid: str, *, api: str = "v1",
                  influx_url: str | None = None, **extra: Any) -> IngestConfig:
    data: dict[str, Any] = {
        "mqtt": mqtt.model_dump(mode="json") | {"password": mqtt.secret()},
        "influx": {"url": influx_url or db.url, "api": api, "database": db.database},
        "client_id": f"hl-ingest-{uid}",
        "share_group": f"g{uid}",
        "province": "test-province",
        "batch": {"size": 200, "max_delay_ms": 50, "max_in_flight": 1000, "retry_initial_ms": 100,
                  "retry_max_ms": 1000},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = data[key] | value
        else:
            data[key] = value
    return IngestConfig.model_validate(data)


def start_ingest(mqtt: MqttSettings, db: InfluxQL, uid: str, **kw: Any) -> IngestService:
    svc = IngestService(ingest_config(mqtt, db, uid, **kw)).start()
    assert svc.connected, "ingest did not connect to the test broker"
    return svc
