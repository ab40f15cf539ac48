"""Benchmark: idle CPU and memory of the real terminal process (Kivy window, MQTT link, outbox).

    python bench/device_idle.py [--seconds 60] [--maxfps 30]

Starts its own Xvfb (unless DISPLAY is set) and a private Mosquitto, runs
``hailong device run --config`` as a separate process showing the IDLE screen
(officer logged in, a ticket being served), lets it settle, then samples its
CPU time (/proc/PID/stat utime+stime) over the window and its RSS
(/proc/PID/status VmRSS, and the peak VmHWM). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "device-idle"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--maxfps", type=int, default=30)
    args = ap.parse_args()
    from broker.contract import QmsEvent, qms_topic
    from broker.mqtt.session import MqttSession
    from broker.mqtt.settings import MqttSettings
    from hailong.localstack import MosquittoServer, XvfbServer

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    xvfb = None
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        xvfb = XvfbServer(range(300, 400)).start()
        env["DISPLAY"] = xvfb.display
    broker = MosquittoServer(OUT / "mosquitto").start()
    cfg = OUT / "device.toml"
    cfg.write_text(f"""
device_id = "idle-t01"
centre = "bench"
counter = "q01"
centre_name = "Trung tâm Phục vụ hành chính công"
counter_label = "Quầy 1"
fullscreen = false
[officer_names]
cb01 = "Nguyễn Thị Lan"
[outbox]
path = "{OUT / 'outbox.sqlite3'}"
[mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
username = "{broker.username}"
""", encoding="utf-8")
    env |= {"HAILONG_DEVICE__MQTT__PASSWORD": broker.password, "KIVY_HOME": str(OUT / "kivy"),
            "HAILONG_KIVY_MAXFPS": str(args.maxfps)}
    proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", "device", "run", "--config", str(cfg)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                                            "password": broker.password})
    qms = MqttSession(settings, "idle-qms").start()
    if not qms.wait_connected(10):
        raise SystemExit(f"could not connect to {settings.url}")
    try:
        time.sleep(4)  # start-up: imports, window, connect
        for kind, ticket in (("officer_login", None), ("ticket_called", "A-1024")):
            ev = QmsEvent(v=1, type=kind, counter="q01", officer="cb01", ticket=ticket,  # type: ignore[arg-type]
                          at=time.time_ns() // 1_000_000)
            qms.publish(qms_topic("bench", "q01"), ev.to_json(), qos=1).wait_for_publish(5)
        time.sleep(3)  # settle on the IDLE screen
        assert proc.poll() is None, "terminal exited"
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        result = {
            "seconds": round(t1 - t0, 1), "maxfps": args.maxfps,
            "idle_cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
            "rss_mb": round(status_kb(proc.pid, "VmRSS") / 1024, 1),
            "peak_rss_mb": round(status_kb(proc.pid, "VmHWM") / 1024, 1),
        }
        print(json.dumps(result, indent=1), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        qms.stop()
        broker.stop()
        if xvfb is not None:
            xvfb.stop()


if __name__ == "__main__":
    main()
