"""The device runtime against the real broker: QMS in, rating out on PUBACK, status, live config."""

from __future__ import annotations

import importlib.metadata
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker.contract import (
    DeviceConfigUpdate,
    QmsEvent,
    config_topic,
    parse_rating,
    parse_status,
    qms_topic,
    rating_topic,
    status_topic,
)
from broker.mqtt.settings import MqttSettings
from device.config import DeviceConfig
from device.link import hailong_version
from device.runtime import DeviceRuntime, HeadlessLoop
from device.state import State
from hailong.localstack import MosquittoServer
from tests.support.mqtt import reconnecting
from tests.support.waiting import wait_until

from .collector import Collector, publish

T = TypeVar("T")


def device_config(settings: MqttSettings, uid: str, tmp_path: Path, **extra: Any) -> DeviceConfig:
    data: dict[str, Any] = {
        "device_id": f"d-{uid}", "centre": f"c-{uid}", "counter": "q01", "centre_name": "Trung tâm HCC",
        "counter_label": "Quầy 1", "officer_names": {"cb01": "Nguyễn Thị Lan"}, "heartbeat_s": 5,
        "mqtt": settings.model_dump(mode="json") | {"password": settings.secret()},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
    }
    return DeviceConfig.model_validate(data | extra)


class Running:
    def __init__(self, cfg: DeviceConfig) -> None:
        self.loop = HeadlessLoop()
        self.rt = DeviceRuntime(cfg, self.loop.post)
        self.loop.start(self.rt.terminal.tick)
        self.rt.start()
        wait_until(self.rt.link.connected.is_set, 10, what="device connected")

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn on the terminal's thread (as the UI/GPIO would) and return its result."""
        done = threading.Event()
        box: list[T] = []
        self.loop.post(lambda: (box.append(fn()), done.set()))  # type: ignore[func-returns-value]
        assert done.wait(5)
        return box[0]

    def stop(self) -> None:
        self.rt.stop()
        self.loop.stop()


@pytest.fixture
def running(mqtt_settings: MqttSettings, uid: str, tmp_path: Path) -> Iterator[Running]:
    r = Running(device_config(mqtt_settings, uid, tmp_path))
    yield r
    r.stop()


def qms(cfg: DeviceConfig, settings: MqttSettings, kind: str, ticket: str | None, at: int) -> None:
    ev = QmsEvent(v=1, type=kind, counter=cfg.counter, officer="cb01", ticket=ticket,  # type: ignore[arg-type]
                  service="ho-tich" if ticket else None, at=at)
    publish(settings, f"qms-{cfg.device_id}", qms_topic(cfg.centre, cfg.counter), ev.to_json())


def test_closed_ticket_prompt_touch_rating_arrives_once_with_sent_at(running: Running, mqtt_settings: MqttSettings,
                                                                     uid: str) -> None:
    cfg = running.rt.config
    col = Collector(mqtt_settings, f"col-{uid}", [rating_topic(cfg.centre, cfg.device_id),
                                                 status_topic(cfg.centre, cfg.device_id)]).start()
    try:
        now = running.rt.terminal.clock.wall_ms()
        qms(cfg, mqtt_settings, "officer_login", None, now)
        wait_until(lambda: running.rt.terminal.state == State.IDLE, 5, what="idle after login")
        # leaving OUT_OF_SERVICE is reported at once, not at the next heartbeat
        wait_until(lambda: any(s.state == "idle" for s in map(parse_status, col.payloads("/status"))), 2,
                   what="status idle published on the state change (heartbeat is 5 s)")
        qms(cfg, mqtt_settings, "ticket_called", "A-1024", now)
        qms(cfg, mqtt_settings, "ticket_closed", "A-1024", now)
        wait_until(lambda: running.rt.terminal.state == State.PROMPT, 5, what="prompt after close")
        assert running.call(lambda: running.rt.terminal.press(4, "touch"))
        ratings = wait_until(lambda: col.payloads("/rating"), 10, what="rating delivered")
        ev = parse_rating(ratings[0])
        assert (ev.ticket, ev.score, ev.officer, ev.counter, ev.closed_at) == ("A-1024", 4, "cb01", "q01", now)
        assert ev.sent_at >= ev.rated_at and ev.boot_id and ev.seq == 0
        wait_until(lambda: running.rt.outbox.depth == 0, 5, what="outbox emptied on PUBACK")
        running.rt.link.publish_status()
        status = wait_until(lambda: [s for s in map(parse_status, col.payloads("/status"))
                                     if s.online and s.state in ("thanks", "idle")], 5, what="status after rating")
        assert status[-1].device == cfg.device_id and status[-1].outbox_depth == 0
        assert not status[-1].outbox_nearly_full and status[-1].version
        # a duplicate close (QoS1 redelivery) and more presses never make a second rating
        qms(cfg, mqtt_settings, "ticket_closed", "A-1024", now)
        running.call(lambda: running.rt.terminal.press(4, "touch"))
        running.rt.link.publish_status()
        wait_until(lambda: len(col.payloads("/status")) >= 3, 5, what="status after repeat")
        assert len(col.payloads("/rating")) == 1
    finally:
        col.stop()


def test_retained_config_update_applied_live_and_invalid_one_refused(running: Running, mqtt_settings: MqttSettings,
                                                                     uid: str) -> None:
    cfg = running.rt.config
    upd = DeviceConfigUpdate(v=1, issued_at=10, language="en", scale=5, rating_window_s=90,
                             officer_names={"cb01": "Trần Văn Minh"})
    publish(mqtt_settings, f"adm-{uid}", config_topic(cfg.centre, cfg.device_id), upd.to_json(), retain=True)
    wait_until(lambda: running.rt.config.language == "en", 5, what="live config update")
    assert running.rt.terminal.view.scale == 5 and running.rt.config.rating_window_s == 90
    assert running.rt.config.officer_names == {"cb01": "Trần Văn Minh"}
    # older issued_at is ignored; a bad payload is logged and ignored, the device keeps running
    publish(mqtt_settings, f"adm-{uid}", config_topic(cfg.centre, cfg.device_id),
            json.dumps({"v": 1, "issued_at": 5, "language": "vi"}).encode())
    publish(mqtt_settings, f"adm-{uid}", config_topic(cfg.centre, cfg.device_id), b'{"v":1,"scale":"big"}')
    publish(mqtt_settings, f"adm-{uid}", config_topic(cfg.centre, cfg.device_id),
            DeviceConfigUpdate(v=1, issued_at=20, prompt_timeout_s=45).to_json(), retain=True)
    wait_until(lambda: running.rt.config.prompt_timeout_s == 45, 5, what="second update")
    assert running.rt.config.language == "en"
    publish(mqtt_settings, f"adm-{uid}", config_topic(cfg.centre, cfg.device_id), b"", retain=True)  # clear


def test_outbox_drains_in_seq_order_after_broker_outage(tmp_path: Path, uid: str) -> None:
    broker = MosquittoServer(tmp_path / "mq").start()
    try:
        settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}",
                                                "username": broker.username, "password": broker.password})
        cfg = device_config(settings, uid, tmp_path, officer_id="cb01", walkup_allowed=True, rating_window_s=5)
        col = Collector(reconnecting(settings), f"col-{uid}", [rating_topic(cfg.centre, cfg.device_id)])
        col.start()
        r = Running(cfg)
        try:
            broker.stop()
            wait_until(lambda: not r.rt.link.connected.is_set(), 5, what="device saw the outage")
            from device.state import RatingDraft
            for i in range(40):
                r.rt.commit(RatingDraft(officer="cb01", ticket=f"A-{i}", service=None, dossier=None, closed_at=1,
                                        scale=4, score=1 + i % 4, reasons=(), input="touch", rated_at=2,
                                        mono_ms=3))
            assert r.rt.outbox.depth == 40
            broker.start()
            wait_until(lambda: len(col.payloads("/rating")) >= 40, 20, what="backlog delivered")
            seqs = [parse_rating(p).seq for p in col.payloads("/rating")]
            assert seqs == list(range(40))
            wait_until(lambda: r.rt.outbox.depth == 0, 5, what="outbox empty")
        finally:
            r.stop()
            col.stop()
    finally:
        broker.stop()


def test_the_version_is_read_from_the_package_metadata_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every status heartbeat carries the version: the metadata is parsed for the first one only."""
    real = importlib.metadata.version
    calls: list[str] = []

    def counting(name: str) -> str:
        calls.append(name)
        return real(name)

    hailong_version.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", counting)
    try:
        seen = [hailong_version() for _ in range(5)]
    finally:
        hailong_version.cache_clear()  # whoever asks next reads the real metadata
    assert calls == ["hailong"]
    assert seen == [real("hailong")[:32]] * 5 and seen[0] != "0"

