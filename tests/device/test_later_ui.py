"""The "Quét mã để đánh giá sau" screen end to end: the real Kivy terminal under Xvfb on the real broker
lets a prompt time out and draws the ticket's rating link as a QR code; the QR is read back from the
screenshot (zxing-cpp), opened on the real web rating service and rated, and the real ingest credits the
rating to the QMS officer who closed the ticket at that counter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from broker import weblink
from broker.fleet.credentials import FleetState
from tests.device.test_ui import PIXEL_MM, ROOT, SCREENS, foreign_words
from tests.web.conftest import WebStack, running_web_stack


@pytest.fixture
def stack(mosquitto: Any, influx_server: Any, tmp_path: Path) -> Iterator[WebStack]:
    with running_web_stack(mosquitto, influx_server, tmp_path) as s:
        yield s


def test_an_unrated_ticket_shows_a_qr_that_rates_it_from_a_phone(xvfb: str, stack: WebStack, tmp_path: Path) -> None:
    s = stack
    key = tmp_path / "weblink.key"
    key.write_text(FleetState.for_fleet(s.fleet).terminal_link_secret(s.centre, s.counter) + "\n", encoding="utf-8")
    key.chmod(0o600)
    mqtt = s.service.cfg.mqtt
    cfg = tmp_path / "device.toml"
    cfg.write_text(f"""
device_id = "{s.device}"
centre = "{s.centre}"
counter = "{s.counter}"
centre_name = "Trung tâm Phục vụ hành chính công tỉnh Bắc Ninh"
counter_label = "Quầy 1"
prompt_timeout_s = 5
fullscreen = false
[officer_names]
cb01 = "Nguyễn Thị Lan"
[outbox]
path = "{tmp_path / 'outbox.sqlite3'}"
[mqtt]
url = "{mqtt.url}"
username = "{mqtt.username}"
[web_link]
enabled = true
base_url = "http://127.0.0.1:{s.service.port}"
key_file = "weblink.key"
show_s = 6
""", encoding="utf-8")
    results = tmp_path / "later.json"
    env = os.environ | {"DISPLAY": xvfb, "KIVY_HOME": str(tmp_path / "kivy"), "KIVY_NO_ARGS": "1",
                        "KIVY_NO_CONSOLELOG": "1", "HAILONG_DEVICE__MQTT__PASSWORD": mqtt.secret() or ""}
    proc = subprocess.run([sys.executable, "-m", "tests.device.later_driver", str(cfg), str(SCREENS), str(results)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert results.exists(), f"driver wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    res = json.loads(results.read_text(encoding="utf-8"))
    assert res["errors"] == [], res["errors"][0]
    assert proc.returncode == 0, proc.stderr[-4000:]
    vi, en = res["later"]
    assert (vi["lang"], en["lang"], vi["ticket"]) == ("vi", "en", "T-501") and vi["url"] == en["url"]
    # what the citizen reads, in both languages, with full diacritics
    texts = {t["lang"]: " | ".join(t["texts"]).replace("\n", " ") for t in res["texts"] if t["screen"] == "later"}
    for want in ("Quét mã để đánh giá sau", "Phiếu số T-501", "Quầy 1 - Cán bộ Nguyễn Thị Lan",
                 "Mã có hiệu lực trong 7 ngày."):
        assert want in texts["vi"], texts["vi"]
    for want in ("Scan to rate later", "Ticket T-501", "The link is valid for 7 days."):
        assert want in texts["en"], texts["en"]
    assert foreign_words(texts["vi"].split(" | "), ("Zalo", "Nguyễn Thị Lan", "T-501", "English")) == []
    # the QR read back from the displayed frame is the link the terminal signed, at a size a phone reads
    for shot in (vi, en):
        image = Image.open(shot["shot"]).convert("L")
        assert image.size == (800, 480)
        found = [r.text for r in zxingcpp.read_barcodes(image)]
        assert found == [vi["url"]], found
        _x, _y, w, h = shot["qr"]
        assert w == h and w * PIXEL_MM[0] >= 50 and h * PIXEL_MM[1] >= 50, shot["qr"]  # >= 5 cm a side
        modules = shot["texture"][0]
        assert w % modules == 0 and w / modules >= 5, (w, modules)  # even modules, >= 5 px (about 1 mm) each
    token = vi["url"].rsplit("/", 1)[1]
    link = weblink.decode(token).link
    assert (link.centre, link.counter, link.ticket, link.source) == (s.centre, s.counter, "T-501", "terminal-qr")
    # the next call ended the first QR at once; the second ended by itself after show_s (6 s)
    assert res["ended_by_call"] == "T-502"
    assert res["second_url"] != vi["url"] and 5.5 <= res["shown_s"] <= 9, res["shown_s"]
    # the phone: the page opens, the rating lands, credited to the officer of the QMS close at counter 1
    page = s.http.get(f"/r/{token}")
    assert page.status_code == 200 and "T-501" in page.text
    reply = s.submit(token, 1, ("thoi_gian_cho",))
    assert reply.status_code == 200 and "Cảm ơn" in reply.text
    eid = weblink.event_id(token)
    assert s.judged.outcomes([eid]) == {eid: "rating"}
    rows = [r for r in s.judged.ratings() if r["event_id"] == eid]
    assert [(r["counter"], r["officer"], r["source"], r["score"]) for r in rows] == [
        (s.counter, "cb01", "terminal-qr", 1)]
