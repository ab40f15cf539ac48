"""The Kivy terminal under Xvfb, driven by real touches, checked at the real broker.

Screenshots of every screen in vi and en at 800x480 and 1280x720 are written to
tests/artifacts/screens/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from broker.contract import parse_rating, rating_topic
from broker.kernel.mqtt import MqttSettings
from tests.conftest import ARTIFACTS
from tests.support.waiting import wait_until

from .collector import Collector

ROOT = Path(__file__).parents[2]
SCREENS = ARTIFACTS / "screens"
MIN_TARGET_PX = 78  # 15 mm on the official 7" display (800 px over 155 mm = 5.16 px/mm)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def test_touch_flows_publish_the_right_ratings_and_every_screen_is_captured(
        xvfb: str, mqtt_settings: MqttSettings, uid: str, tmp_path: Path) -> None:
    device, centre = f"ui-{uid}", f"c-{uid}"
    cfg = tmp_path / "device.toml"
    cfg.write_text(f"""
device_id = "{device}"
centre = "{centre}"
counter = "q01"
centre_name = "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh"
counter_label = "Quầy 3"
thanks_s = 1.0
fullscreen = false
[officer_names]
cb01 = "Nguyễn Thị Lan"
[outbox]
path = "{tmp_path / 'outbox.sqlite3'}"
[mqtt]
url = "{mqtt_settings.url}"
username = "{mqtt_settings.username}"
""", encoding="utf-8")
    col = Collector(mqtt_settings, f"col-{uid}", [rating_topic(centre, device)]).start()
    results = tmp_path / "results.json"
    env = os.environ | {"DISPLAY": xvfb, "KIVY_HOME": str(tmp_path / "kivy"), "KIVY_NO_ARGS": "1",
                        "KIVY_NO_CONSOLELOG": "1", "HAILONG_DEVICE__MQTT__PASSWORD": mqtt_settings.secret() or ""}
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.device.ui_driver", str(cfg), str(SCREENS), str(results)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
        assert results.exists(), f"driver wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        res = json.loads(results.read_text(encoding="utf-8"))
        assert res["errors"] == [], res["errors"][0]
        assert proc.returncode == 0, proc.stderr[-4000:]

        # every rating given by touch arrived at the broker, bound to its ticket, none extra
        expected = res["expected"]
        got = wait_until(lambda: [parse_rating(p) for p in col.payloads("/rating")]
                         if len(col.payloads("/rating")) >= len(expected) else None, 10, what="ratings at broker")
        assert [(e.ticket, e.score, e.scale, list(e.reasons), e.input, e.officer) for e in got] == \
               [(x["ticket"], x["score"], x.get("scale", 4), x["reasons"], "touch", "cb01") for x in expected]
        assert all(e.closed_at is not None and e.sent_at >= e.rated_at for e in got)

        # every screen, both languages, both sizes, captured at the right size
        shots = {(s["name"], s["lang"], tuple(s["size"])) for s in res["screens"]}
        for name in ("idle", "prompt", "reasons", "thanks", "out_of_service"):
            for lang in ("vi", "en"):
                for size in ((800, 480), (1280, 720)):
                    assert (name, lang, size) in shots, (name, lang, size)
                    path = SCREENS / f"{name}_{lang}_{size[0]}x{size[1]}.png"
                    assert png_size(path) == size and path.stat().st_size > 5000
        assert res["shown"] == sorted(["idle", "prompt", "reasons", "thanks", "out_of_service"])

        # large targets: every tile, chip and button >= 15 mm on the 7" display
        small = [t for t in res["targets"] if t["size"] == [800, 480] and min(t["w"], t["h"]) < MIN_TARGET_PX]
        assert not small, small
        assert {t["screen"] for t in res["targets"]} >= {"idle", "prompt", "reasons"}
    finally:
        col.stop()
