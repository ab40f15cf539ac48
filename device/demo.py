"""``hailong device run --demo``: one terminal window fed by a simulated queue system.

The simulated queue (QMS) publishes, on the real broker, what a queue adapter
would: an officer logs in, then every ``cycle_s`` a ticket is called and,
a few seconds later, closed, which puts the rating prompt on screen.

:func:`launch_demo_terminal` is what ``hailong demo`` calls to add a terminal
window when a display is present.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from broker.contract import QmsEvent, qms_topic
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings

from .config import DeviceConfig

log = logging.getLogger("hailong.device.demo")

DEMO_OFFICER = "cb-demo"


def demo_config(url: str, username: str | None, password: str | None, *, device: str = "demo-t01",
                centre: str = "ttphcc-demo", counter: str = "q01", state_dir: Path = Path(".hailong/device-demo"),
                fullscreen: bool = False) -> DeviceConfig:
    data: dict[str, Any] = {
        "device_id": device, "centre": centre, "counter": counter,
        "centre_name": "Trung tâm Phục vụ hành chính công (demo)", "counter_label": "Quầy 1",
        "officer_names": {DEMO_OFFICER: "Nguyễn Thị Lan"}, "prompt_timeout_s": 20, "fullscreen": fullscreen,
        "outbox": {"path": str(state_dir / f"{device}-outbox.sqlite3")},
        "mqtt": {"url": url, "username": username, "password": password},
    }
    return DeviceConfig.model_validate(data)


class SimulatedQueue:
    """Publishes officer_login, then ticket_called / ticket_closed pairs, until stopped."""

    def __init__(self, settings: MqttSettings, centre: str, counter: str, cycle_s: float = 25.0,
                 serve_s: float = 5.0, wait_for: threading.Event | None = None) -> None:
        self.wait_for = wait_for  # e.g. the terminal's "connected": it must be subscribed before the login
        self.topic = qms_topic(centre, counter)
        self.counter = counter
        self.cycle_s, self.serve_s = cycle_s, serve_s
        self.session = MqttSession(settings, f"{counter}-{centre}-qms-sim"[:64])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl-sim-qms", daemon=True)

    def _send(self, kind: str, ticket: str | None = None) -> None:
        ev = QmsEvent(v=1, type=kind, counter=self.counter, officer=DEMO_OFFICER, ticket=ticket,  # type: ignore[arg-type]
                      service="ho-tich" if ticket else None, at=time.time_ns() // 1_000_000)
        self.session.publish(self.topic, ev.to_json())

    def _run(self) -> None:
        if self.wait_for is not None:
            self.wait_for.wait(30)
        self._send("officer_login")
        n = 1000
        while not self._stop.is_set():
            n += 1
            ticket = f"A-{n}"
            self._send("ticket_called", ticket)
            if self._stop.wait(self.serve_s):
                break
            self._send("ticket_closed", ticket)
            self._stop.wait(self.cycle_s)

    def start(self) -> SimulatedQueue:
        self.session.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.session.stop()


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def launch_demo_terminal(url: str, username: str | None, password: str | None, *, device: str = "demo-t01",
                         centre: str = "ttphcc-demo", counter: str = "q01",
                         log_file: Path | None = None) -> subprocess.Popen[bytes] | None:
    """Open one terminal window (a separate process: Kivy owns its process) if a display is present.

    Returns the process (terminate() it when the demo ends) or None when there is no display.
    The password goes through the environment, never the command line.
    """
    if not display_available():
        return None
    cmd = [sys.executable, "-m", "device.cli", "run", "--demo", "--broker", url,
           "--device", device, "--centre", centre, "--counter", counter]
    if username:
        cmd += ["--username", username]
    env = os.environ | ({"HAILONG_DEVICE_PASSWORD": password} if password else {})
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
