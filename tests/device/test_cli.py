"""`hailong device run`: config errors, a button-only unit end to end, and the --demo window."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from broker.contract import QmsEvent, parse_qms, parse_rating, parse_status, qms_topic, rating_topic, status_topic
from broker.mqtt.settings import MqttSettings
from device.config import DeviceConfig
from device.demo import launch_demo_terminal
from device.runner import run_headless
from hailong.cli import main
from tests.support.waiting import wait_until

from .collector import Collector, publish


def test_bad_config_stops_with_file_key_and_problem(tmp_path: Path) -> None:
    f = tmp_path / "device.toml"
    f.write_text('device_id = "d1"\ncentre = "c1"\ncounter = "q1"\ncentre_name = "C"\ncounter_label = "Q"\n'
                 'scale = 7\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["device", "run", "--config", str(f)])
    assert res.exit_code == 1
    assert str(f) in res.output and "scale" in res.output
    res = CliRunner().invoke(main, ["device", "run"])
    assert res.exit_code == 2 and "--config" in res.output


def test_missing_password_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "device.toml"
    missing = tmp_path / "mqtt.pass"
    f.write_text('device_id = "d1"\ncentre = "c1"\ncounter = "q1"\ncentre_name = "C"\ncounter_label = "Q"\n'
                 f'[mqtt]\nurl = "mqtt://127.0.0.1:1"\nusername = "d1"\npassword_file = "{missing}"\n',
                 encoding="utf-8")
    res = CliRunner().invoke(main, ["device", "run", "--config", str(f)])
    assert res.exit_code == 1 and "Traceback" not in res.output and not isinstance(res.exception, OSError)
    assert f"config error in {f}: mqtt.password_file: secret file {missing}: does not exist" in res.output


def test_button_only_unit_rates_through_the_broker(mqtt_settings: MqttSettings, uid: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd's notify socket: the unit is Type=notify with WatchdogSec (firmware_config/osfiles.py)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    cfg = DeviceConfig.model_validate({
        "device_id": f"b-{uid}", "centre": f"c-{uid}", "counter": "q07", "centre_name": "C", "counter_label": "Q7",
        "hardware": "buttons", "scale": 3, "gpio": {"buttons": {3: 5, 2: 6, 1: 13}, "debounce_ms": 20},
        "mqtt": mqtt_settings.model_dump(mode="json") | {"password": mqtt_settings.secret()},
        "outbox": {"path": str(tmp_path / "o.sqlite3")},
    })
    factory = MockFactory()
    stop = threading.Event()
    col = Collector(mqtt_settings, f"col-{uid}", [rating_topic(cfg.centre, cfg.device_id),
                                                 status_topic(cfg.centre, cfg.device_id)]).start()
    t = threading.Thread(target=run_headless, args=(cfg, factory, stop), daemon=True)
    t.start()
    try:
        wait_until(lambda: any(parse_status(p).online for p in col.payloads("/status")), 10, what="unit online")
        for kind in ("officer_login", "ticket_closed"):
            ev = QmsEvent(v=1, type=kind, counter="q07", officer="cb07",  # type: ignore[arg-type]
                          ticket="B-7" if kind == "ticket_closed" else None, at=time.time_ns() // 1_000_000)
            publish(mqtt_settings, f"q-{uid}", qms_topic(cfg.centre, "q07"), ev.to_json())
        pin = factory.pin(13)
        # the prompt is open once the close has been processed; press the "Không hài lòng" button (score 1),
        # held 30 ms (a press shorter than gpio.hold_ms, 20 ms, is a glitch and records nothing)
        def pressed() -> bool:
            pin.drive_low()
            time.sleep(0.03)
            pin.drive_high()
            return bool(col.payloads("/rating"))
        wait_until(pressed, 10, interval=0.2, what="button rating at broker")
        ev = parse_rating(col.payloads("/rating")[0])
        assert (ev.ticket, ev.score, ev.scale, ev.input, ev.officer) == ("B-7", 1, 3, "button", "cb07")
        assert len(col.payloads("/rating")) == 1
        # READY=1 once the loop turns, then WATCHDOG=1 about every WatchdogSec/2 from the same loop
        got = [notify.recv(64).decode() for _ in range(4)]
        assert got[0] == "READY=1" and got[1:] == ["WATCHDOG=1"] * 3
    finally:
        stop.set()
        t.join(10)
        col.stop()
        factory.reset()
        Device.pin_factory = None
        notify.close()
    offline = [parse_status(p) for p in col.payloads("/status")]
    assert offline and not t.is_alive()


def test_demo_opens_a_window_fed_by_the_simulated_queue(xvfb: str, mqtt_settings: MqttSettings, uid: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    centre, device = f"demo-{uid}", f"demo-t-{uid}"
    col = Collector(mqtt_settings, f"col-{uid}", [qms_topic(centre, "q01"), status_topic(centre, device)]).start()
    monkeypatch.setenv("KIVY_HOME", str(tmp_path / "kivy"))
    monkeypatch.chdir(tmp_path)  # the demo keeps its outbox under ./.hailong/device-demo
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert launch_demo_terminal(mqtt_settings.url, mqtt_settings.username, mqtt_settings.secret()) is None
    monkeypatch.setenv("DISPLAY", xvfb)
    proc = launch_demo_terminal(mqtt_settings.url, mqtt_settings.username, mqtt_settings.secret(),
                                device=device, centre=centre, log_file=tmp_path / "demo.log")
    assert proc is not None
    try:
        wait_until(lambda: any(parse_qms(p).type == "ticket_called" for p in col.payloads("/q01")), 30,
                   what="simulated queue calling a ticket")
        wait_until(lambda: any(parse_status(p).online for p in col.payloads("/status")), 10, what="demo online")
        assert proc.poll() is None, (tmp_path / "demo.log").read_text(errors="replace")
        assert (tmp_path / ".hailong" / "device-demo" / f"{device}-outbox.sqlite3").exists()
        assert mqtt_settings.secret() not in " ".join(map(str, proc.args))  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        col.stop()
