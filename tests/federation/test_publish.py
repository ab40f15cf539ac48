"""``hailong federation publish`` against a real Mosquitto and InfluxDB 1.6.7.

Ratings and tickets are written raw; the publisher backfills the daily rollups of the window
(dashboards/rollup.py), counts them, and publishes one message per registered centre and day,
zero days included, which a subscriber on the province broker receives and compares with
the hand count.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from paho.mqtt.client import MQTTMessage

from broker.federation import parse_centre_day
from broker.kernel.settings import ConfigError
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from federation.config import FederationConfig
from federation.publish import publish
from hailong.cli import main
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL

from .support import local_day, seed_province, write_fleet


class Collector:
    def __init__(self, settings: MqttSettings, client_id: str, filter_: str) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()
        self.session = MqttSession(settings, client_id, subscriptions=[(filter_, 1)], on_message=self._on)
        self.session.start()
        assert self.session.wait_connected(10)
        assert self.session.subscribed.wait(10)

    def _on(self, msg: MQTTMessage) -> None:
        with self.lock:
            self.messages.setdefault(msg.topic, []).append(msg.payload)

    def wait_for(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if sum(len(v) for v in self.messages.values()) >= n:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{sum(len(v) for v in self.messages.values())} of {n} messages arrived")

    def stop(self) -> None:
        self.session.stop()


def _config(tmp_path: Path, uid: str, mqtt_settings: MqttSettings, db: InfluxQL, centres: dict[str, str],
            province: str) -> FederationConfig:
    fleet = write_fleet(tmp_path / "fleet", centres)
    return FederationConfig.model_validate({
        "province": province, "registry": fleet, "mqtt": mqtt_settings.model_dump(),
        "influx": {"url": db.url, "database": db.database, "api": "v1"}, "client_id": f"fed-{uid}"})


def test_every_centre_every_day_with_the_hand_count(tmp_path: Path, uid: str, mqtt_settings: MqttSettings,
                                                    influx_db: InfluxQL) -> None:
    province = f"p{uid}"
    centres = [f"{province}-c{i}" for i in range(1, 5)]
    days = [local_day(2), local_day(1), local_day(0)]
    # one centre had nothing at all yesterday; another centre of ANOTHER province must not be reported
    truth = seed_province(influx_db.url, influx_db.database, province, centres, days, seed=7,
                          quiet=frozenset({(centres[1], days[1])}))
    cfg = _config(tmp_path, uid, mqtt_settings, influx_db, {**dict.fromkeys(centres, province),
                                                            f"x{uid}": f"other{uid}"}, province)
    sub = Collector(mqtt_settings, f"sub-{uid}", "fed/#")
    try:
        first = publish(cfg, days=3)
        sub.wait_for(12)
        assert (first.messages, first.centres, first.days) == (12, 4, 3)
        got = {t: parse_centre_day(v[-1]) for t, v in sub.messages.items()}
        assert len(got) == 12 and not any(f"x{uid}" in t for t in got)
        for centre in centres:
            for day in days:
                msg = got[f"fed/{centre}/{day.isoformat()}"]
                want = truth.of(centre, day.isoformat())
                assert {k: getattr(msg, k) for k in want} == want, (centre, day)
                assert msg.province == province and msg.revision == first.revision
                assert msg.digest == msg.expected_digest()
        zero = got[f"fed/{centres[1]}/{days[1].isoformat()}"]
        assert zero.counts == (0, 0, 0, 0, 0, 0)
        assert sum(m.rated for m in got.values()) > 50  # the seed is not trivially empty
        second = publish(cfg, days=1)  # the hourly run of today: a higher revision, the same counts
        sub.wait_for(16)  # 12 + the 4 centres of today again
        assert second.revision > first.revision and second.messages == 4
        today = f"fed/{centres[0]}/{days[2].isoformat()}"
        again = parse_centre_day(sub.messages[today][-1])
        assert again.revision == second.revision and again.digest == got[today].digest
    finally:
        sub.stop()


def test_config_errors_name_the_key(tmp_path: Path, uid: str, mqtt_settings: MqttSettings,
                                    influx_db: InfluxQL) -> None:
    cfg = _config(tmp_path, uid, mqtt_settings, influx_db, {"c1": "hue"}, "da-nang")
    with pytest.raises(ConfigError, match=r"province.*no centre of 'da-nang'.*hue"):
        publish(cfg, days=1)
    toml = tmp_path / "federation.toml"
    toml.write_text('province = "hue"\nregistry = "nowhere"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["federation", "publish", "--config", str(toml)])
    assert result.exit_code != 0 and f"{tmp_path / 'nowhere'}: fleet directory not found" in result.output


def test_influx_down_is_a_clear_error_and_nothing_is_sent(tmp_path: Path, uid: str, mqtt_settings: MqttSettings,
                                                          influx_server: InfluxServer) -> None:
    fleet = write_fleet(tmp_path / "fleet", {"c1": "hue"})
    toml = tmp_path / "federation.toml"
    toml.write_text("\n".join([
        'province = "hue"', f'registry = "{fleet}"', "[influx]", 'url = "http://127.0.0.1:9"', "[mqtt]",
        f'url = "{mqtt_settings.url}"', f'username = "{mqtt_settings.username}"']) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["federation", "publish", "--config", str(toml)],
                                env={"HAILONG_FEDERATION__MQTT__PASSWORD": mqtt_settings.secret() or ""})
    assert result.exit_code == 1
    assert "cannot reach InfluxDB" in result.output and "the next run sends it again" in result.output
