"""A provisioned terminal (certificate mode) and the ingest (rendered service password) through the
rendered broker: a rating from the real device runtime lands in InfluxDB with the registry's tags."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.mqtt.settings import MqttSettings
from device.config import load_device_config
from device.runtime import DeviceRuntime
from device.state import RatingDraft
from hailong.cli import main
from storage.influxql import InfluxQL
from tests.broker.fleet_broker import start_fleet_broker
from tests.support.ingest import start_ingest
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def test_provisioned_terminal_rates_through_the_rendered_broker(tmp_path: Path, influx_db: InfluxQL,
                                                               uid: str) -> None:
    fb = start_fleet_broker(tmp_path)
    svc = runtime = None
    try:
        res = CliRunner().invoke(main, ["fleet", "--fleet", str(fb.fleet), "provision", "dn-q02",
                                        "--out", str(tmp_path / "bundles"), "--broker-host", "127.0.0.1"])
        assert res.exit_code == 0, res.output
        bundle = tmp_path / "bundles" / "dn-q02"
        etc = bundle / "rootfs" / "etc" / "hailong"
        # on the Pi these paths are /etc/hailong/...; here the technician's env overrides point at the bundle
        env = {"HAILONG_DEVICE__MQTT__URL": f"mqtts://127.0.0.1:{fb.options.cert_port}",
               "HAILONG_DEVICE__MQTT__CA_FILE": str(etc / "ca.crt"),
               "HAILONG_DEVICE__MQTT__CERT_FILE": str(etc / "device.crt"),
               "HAILONG_DEVICE__MQTT__KEY_FILE": str(etc / "device.key"),
               "HAILONG_DEVICE__OUTBOX__PATH": str(tmp_path / "outbox.sqlite3")}
        cfg = load_device_config(bundle / "device.toml", environ=env)
        assert cfg.walkup_allowed and cfg.mode == "manual_served"
        ingest_mqtt = MqttSettings.model_validate({
            "url": f"mqtts://127.0.0.1:{fb.options.tls_port}", "username": "svc.ingest",
            "password": fb.password("svc.ingest"), "ca_file": str(fb.out / "ca.crt")})
        svc = start_ingest(ingest_mqtt, influx_db, uid, registry=fb.fleet)

        def inline(fn: Callable[[], None]) -> None:
            fn()

        runtime = DeviceRuntime(cfg, inline).start()
        wait_until(lambda: runtime is not None and runtime.link.connected.is_set(), 15, what="terminal connected")
        now = int(time.time() * 1000)
        runtime.commit(RatingDraft(officer="le-thi-huong", ticket=None, service=None, dossier=None, closed_at=None,
                                   scale=4, score=4, reasons=(), input="touch", rated_at=now, mono_ms=1234))
        rows = wait_until(lambda: influx_db.rows('SELECT * FROM "rating"'), 20, what="rating in InfluxDB")
        assert len(rows) == 1
        row = rows[0]
        assert (row["device"], row["centre"], row["counter"], row["province"]) == ("dn-q02", "dn-tthc", "q02",
                                                                                   "da-nang")
        assert row["walkup"] == "true" and row["class"] == "very_satisfied"
    finally:
        if runtime is not None:
            runtime.stop()
        if svc is not None:
            svc.stop()
        fb.server.stop()

