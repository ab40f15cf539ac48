"""The Kivy terminal under Xvfb, driven by real touches, checked at the real broker.

Screenshots of every screen in vi and en at 800x480 and 1280x720 are written to
tests/artifacts/screens/ (gitignored) for a person to look at; the same run measures
what a person would check on them: touch targets in mm on both axes of the official
7" panel, labels cut only between words, the grey buttons' edges, the countdown, that
every neighbouring pair of faces of every scale differs in greyscale, and that a Vietnamese
screen shows no English word, path or code.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from broker.contract import parse_rating, rating_topic
from broker.mqtt.settings import MqttSettings
from device.i18n import load_catalogue
from device.ui.textfit import NBSP, units
from device.ui.theme import contrast
from tests.conftest import ARTIFACTS
from tests.support.waiting import wait_until

from .collector import Collector

ROOT = Path(__file__).parents[2]
SCREENS = ARTIFACTS / "screens"
# The official 7" display: 800x480 over 154.08 x 85.92 mm active area. Its pixels are not square,
# so 15 mm is 78 px across but 84 px down.
PIXEL_MM = (0.1926, 0.1790)
MIN_TARGET_MM = 15.0
MIN_EDGE_CONTRAST = 3.0   # WCAG 2.1 SC 1.4.11
MIN_GREY_MAD = 18.0       # mean absolute grey difference (0..255) between the two best faces
MIN_INK_DIFFERENCE = 0.25 # 1 - IoU of the faces' dark features (eyes, mouth): a different shape
# A Vietnamese syllable written without diacritics ("Lan", "An", "tin"): onset, 1-3 vowels, coda.
# English words and code ("config", "Error", "MQTT", "file", "sqlite") do not fit it.
VI_SYLLABLE = re.compile(r"(ngh|ng|gh|gi|kh|nh|ph|qu|th|tr|ch|[bcdghklmnprstvx])?[aeiouy]{1,3}(ng|nh|ch|[cmnpt])?")


def _words(language: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W\d_]+", json.dumps(load_catalogue(language).data, ensure_ascii=False))}


EN_ONLY_WORDS = _words("en") - _words("vi")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def face_crop(path: Path, box: list[float]) -> Image.Image:
    cx, cy, r = box
    side = int(r) + 3
    return Image.open(path).convert("L").crop((int(cx) - side, int(cy) - side, int(cx) + side, int(cy) + side))


def ink(img: Image.Image) -> set[tuple[int, int]]:
    """The face's drawn features (INK #111111 lines and fills), as a set of pixels."""
    w, h = img.size
    px = img.load()
    assert px is not None
    return {(x, y) for x in range(w) for y in range(h) if px[x, y] < 60}


def greyscale_difference(path: Path, a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean absolute grey difference, 1 - IoU of the dark features) between two faces of one screenshot."""
    fa, fb = face_crop(path, a), face_crop(path, b)
    mad = ImageStat.Stat(ImageChops.difference(fa, fb)).mean[0]
    ia, ib = ink(fa), ink(fb)
    return mad, 1 - len(ia & ib) / len(ia | ib)


def foreign_words(texts: list[str], data: tuple[str, ...] = ()) -> list[str]:
    """What on a Vietnamese screen is not Vietnamese: a path, an English word, a Latin-only token
    that is no Vietnamese syllable (an exception name, "MQTT"). ``data`` (device ids, ticket
    numbers) is removed first: it is the citizen's and the technician's data, not language."""
    bad: list[str] = []
    for text in texts:
        for value in data:
            text = text.replace(value, " ")
        if re.search(r"[/\\]|\.(toml|py|sqlite3?)\b", text):
            bad.append(text)
        for word in re.findall(r"[^\W\d_]+", text):
            low = word.lower()
            if len(word) > 1 and low.isascii() and (low in EN_ONLY_WORDS or not VI_SYLLABLE.fullmatch(low)):
                bad.append(word)
    return bad


def test_the_foreign_word_check_finds_what_it_must() -> None:
    ok = ["Kỹ thuật viên: kiểm tra thẻ nhớ.", "Cán bộ Nguyễn Văn An", "Thiết bị: t-01"]
    assert foreign_words(ok, ("t-01",)) == []
    assert foreign_words(["Lỗi (OSError: disk I/O error)"]) == ["Lỗi (OSError: disk I/O error)", "OSError", "disk",
                                                                 "error"]
    assert foreign_words(["kiểm tra tệp cấu hình (/etc/hailong/device.toml)", "máy chủ MQTT", "Terminal"]) == [
        "kiểm tra tệp cấu hình (/etc/hailong/device.toml)", "etc", "hailong", "device", "toml", "MQTT", "Terminal"]


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

        # whom the citizen rates, on the prompt and on the thanks screen: the QMS close's officer by name
        for screen in ("prompt", "thanks"):
            for lang, who in (("vi", "Quầy 3 - Cán bộ Nguyễn Thị Lan"), ("en", "Quầy 3 - Officer Nguyễn Thị Lan")):
                seen = [t["texts"] for t in res["texts"] if t["screen"] == screen and t["lang"] == lang]
                assert seen and all(any(" ".join(x.split()) == who for x in texts) for texts in seen), (screen, seen)
        who_labels = [lb for lb in res["labels"] if lb["source"].startswith("Quầy")]
        assert {lb["screen"] for lb in who_labels} == {"prompt", "thanks"}
        for lb in who_labels:  # never cut inside the name or the counter label
            assert all(line.startswith("Quầy") or line.startswith(("Cán", "Officer")) for line in lb["lines"]), lb
        # a Vietnamese screen speaks Vietnamese only: no English word, no path, no code. The one
        # exception is the language button, which names English in English ("English") on purpose.
        switch = load_catalogue("vi").text("switch_to")
        vi_texts = [t for t in res["texts"] if t["lang"] == "vi"]
        assert {t["screen"] for t in vi_texts} == {"idle", "prompt", "reasons", "thanks", "out_of_service"}
        for t in vi_texts:
            tickets = ("T-five", "T-three", "T-undo", "T-skip", "T-top", "T-big")
            assert foreign_words(t["texts"], (device, switch, *tickets)) == [], t

        # every screen, both languages, both sizes, captured at the right size
        shots = {(s["name"], s["lang"], tuple(s["size"])) for s in res["screens"]}
        for name in ("idle", "prompt", "reasons", "thanks", "out_of_service"):
            for lang in ("vi", "en"):
                for size in ((800, 480), (1280, 720)):
                    assert (name, lang, size) in shots, (name, lang, size)
                    path = SCREENS / f"{name}_{lang}_{size[0]}x{size[1]}.png"
                    assert png_size(path) == size and path.stat().st_size > 5000
        assert res["shown"] == sorted(["idle", "prompt", "reasons", "thanks", "out_of_service"])
        for size in ("800x480", "1280x720"):
            for lang in ("vi", "en"):
                path = SCREENS / f"prompt_scale5_{lang}_{size}.png"
                assert png_size(path) == tuple(int(v) for v in size.split("x")), path

        # large targets: every touchable widget >= 15 mm on BOTH axes of the 7" display
        at_7in = [t | {"w_mm": t["w"] * PIXEL_MM[0], "h_mm": t["h"] * PIXEL_MM[1]}
                  for t in res["targets"] if t["size"] == [800, 480]]
        small = [t for t in at_7in if min(t["w_mm"], t["h_mm"]) < MIN_TARGET_MM]
        assert not small, small
        for kind in sorted({t["kind"] for t in at_7in}):
            mine = [t for t in at_7in if t["kind"] == kind]
            print(f"targets {kind}: min {min(t['w_mm'] for t in mine):.1f} x {min(t['h_mm'] for t in mine):.1f} mm")
        assert {t["screen"] for t in at_7in} >= {"idle", "prompt", "reasons", "out_of_service"}
        assert {t["kind"] for t in at_7in} >= {"LevelTile", "Chip", "BigButton", "EdgedButton"}

        # labels: never cut inside a word (NBSP joins its syllables), drawn as computed (Kivy did not
        # re-wrap: the texture is no wider than the box), at most two lines, and no lone last word
        assert res["labels"], "no fitted labels measured"
        for lb in res["labels"]:
            where = (lb["screen"], lb["size"], lb["source"])
            assert lb["fits"] and lb["texture"][0] <= lb["w"] + 1, where
            assert [u for line in lb["lines"] for u in units(line)] == units(lb["source"]), where
            assert lb["text"] == "\n".join(lb["lines"]) and len(lb["lines"]) <= 2, where
            if len(units(lb["source"])) >= 4:
                assert len(lb["lines"]) == 1 or len(units(lb["lines"][-1])) >= 2, where
        tile_words = {lb["source"] for lb in res["labels"] if lb["screen"] == "prompt"}
        assert f"Bình{NBSP}thường" in tile_words and f"Rất không hài{NBSP}lòng" in tile_words
        for size in ([800, 480], [1280, 720]):  # the question: one line in Vietnamese at both sizes
            q = [lb for lb in res["labels"] if lb["size"] == size and lb["source"].startswith("Quý")]
            assert q and all(len(lb["lines"]) == 1 for lb in q), q
        # a row of tiles reads as one size
        rows: dict[int, set[float]] = {}
        for lb in res["labels"]:
            if lb["screen"] == "prompt" and lb["tile"]:
                rows.setdefault(lb["call"], set()).add(lb["font"])
        assert len(rows) >= 8 and all(len(fonts) == 1 for fonts in rows.values()), rows

        # the grey buttons ("Bỏ qua", "Chọn lại", the language toggle) have a visible edge >= 3:1
        assert {e["screen"] for e in res["edges"]} >= {"prompt", "reasons", "out_of_service"}
        for e in res["edges"]:
            assert e["edge"] and e["width"] >= 2 and contrast(e["edge"], e["page"]) >= MIN_EDGE_CONTRAST, e
        print("edges:", sorted({f"{e['text']} on {e['page']}: {contrast(e['edge'], e['page']):.2f}:1"
                                for e in res["edges"] if e["size"] == [800, 480]}))

        # a countdown on the prompt and reasons screens, counting down
        for name, fmt in (("prompt", r"Còn (\d+) giây|(\d+) s left"), ("reasons", r"Còn (\d+) giây|(\d+) s left")):
            seen = [c for c in res["countdown"] if c["screen"] == name]
            assert seen and all(re.fullmatch(fmt, c["text"]) for c in seen), seen
        vi_prompt = [c for c in res["countdown"] if c["screen"] == "prompt" and c["lang"] == "vi"]
        first, later = (int(re.sub(r"\D", "", c["text"])) for c in vi_prompt[:2])
        assert 0 < later < first <= 30, vi_prompt

        # large text and extra time: the citizen's "Chữ lớn" on the prompt
        for name in ("prompt_large", "reasons_large", "thanks_large"):
            assert png_size(SCREENS / f"{name}_vi_800x480.png") == (800, 480)
        tiles = [lb for lb in res["labels"] if lb["tile"] and lb["size"] == [800, 480] and lb["lang"] == "vi"
                 and lb["screen"] == "prompt"]
        large = [lb["font"] for lb in tiles if lb["large"]]
        normal = [lb["font"] for lb in tiles if not lb["large"] and lb["source"] in {x["source"] for x in tiles
                                                                                      if x["large"]}]
        assert large and normal and min(large) >= 1.15 * max(normal), (large, normal)
        before, after = (int(re.sub(r"\D", "", text)) for text in res["assist_countdown"])
        assert 45 <= after <= 60 and after > before + 20, res["assist_countdown"]  # 30 s more, in the 60 s window
        assert res["large_after_thanks"] is False  # the next citizen starts at the terminal's own size
        buttons = {t["text"].replace(NBSP, " ") for t in at_7in if t["kind"] == "EdgedButton"}
        assert {"Chữ lớn", "Chữ thường", "Large text"} <= buttons, buttons  # measured >= 15 mm with the rest

        # "Chọn lại" went back to the faces without storing anything (one rating for T-undo, above)
        assert res["rechosen"] == 1
        print("tap -> Cảm ơn (ms, under Xvfb, includes frame waits):", [round(v) for v in res["latency_ms"]])

        # neighbouring faces differ in shape, not only in colour: every neighbouring pair of every
        # scale, compared in greyscale
        assert {f["scale"] for f in res["faces"]} == {3, 4, 5}
        pairs = []
        for f in res["faces"]:
            for better in range(f["scale"], 1, -1):
                mad, ink_diff = greyscale_difference(SCREENS / f["shot"], f["boxes"][str(better)],
                                                     f["boxes"][str(better - 1)])
                pairs.append((f["shot"], f"{better}-{better - 1}", round(mad, 1), round(ink_diff, 2)))
        print("faces (shot, pair, grey MAD, ink 1-IoU):", *pairs, sep="\n  ")
        assert len(pairs) == 2 * 2 + 4 * 3 + 2 * 4, pairs  # shots x pairs: scale 3, 4 (vi, en), 5
        failing = [p for p in pairs if p[2] < MIN_GREY_MAD or p[3] < MIN_INK_DIFFERENCE]
        assert not failing, failing
    finally:
        col.stop()


def _oos_driver(xvfb: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    results = tmp_path / f"oos-{len(list(tmp_path.glob('oos-*.json')))}.json"
    env = os.environ | {"DISPLAY": xvfb, "KIVY_HOME": str(tmp_path / "kivy"), "KIVY_NO_ARGS": "1",
                        "KIVY_NO_CONSOLELOG": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.device.oos_driver", args[0], args[1], str(SCREENS),
                           str(results), *args[2:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert results.exists(), f"driver wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    res: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    assert res["errors"] == [], res["errors"][0]
    res["stderr"] = proc.stderr
    return res


def test_out_of_service_screens_show_language_device_and_code_never_errors(xvfb: str, tmp_path: Path) -> None:
    """Every way a terminal stops rating, as the citizen sees it: the terminal's language only,
    the device id the file names (even an invalid file), a short code; the error text in the log."""
    invalid = tmp_path / "invalid.toml"
    invalid.write_text('device_id = "qn-t07"\ncentre = "c1"\ncounter = "q1"\ncentre_name = "C"\n'
                       'counter_label = "Quầy 7"\nscale = 7\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text('device_id = "qn-t08"\ncentre = \n', encoding="utf-8")
    valid = tmp_path / "device.toml"
    valid.write_text('device_id = "qn-t09"\ncentre = "c1"\ncounter = "q1"\n'
                     'centre_name = "Trung tâm Phục vụ hành chính công"\n'
                     'counter_label = "Quầy 9"\nfullscreen = false\n[officer_names]\ncb01 = "Nguyễn Văn An"\n'
                     f'[outbox]\npath = "{tmp_path / "unused.sqlite3"}"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n',
                     encoding="utf-8")
    captures: list[dict[str, Any]] = []
    for path, name, device, code in ((tmp_path / "missing.toml", "oos_no_config_missing", None, "C1"),
                                     (broken, "oos_no_config_broken", None, "C2"),
                                     (invalid, "oos_no_config_invalid", "qn-t07", "C3")):
        res = _oos_driver(xvfb, tmp_path, "no_config", str(path), name)
        assert res["exit"] == 1
        assert f"config error in {path}" in res["stderr"]  # the whole error, with the path, goes to the log
        shots = res["captures"]
        assert [(c["lang"], c["reason"], c["code"]) for c in shots] == [("vi", "no_config", code),
                                                                        ("en", "no_config", code)]
        for c in shots:
            shown = " | ".join(t.replace(NBSP, " ") for t in c["texts"])
            unit = device or ("chưa rõ" if c["lang"] == "vi" else "unknown")
            assert ("Thiết bị: " if c["lang"] == "vi" else "Terminal: ") + unit in shown, shown
            assert ("Mã: " if c["lang"] == "vi" else "Code: ") + code in shown, shown
            assert str(tmp_path) not in shown and "toml" not in shown and "error" not in shown.lower(), shown
        captures += shots
    res = _oos_driver(xvfb, tmp_path, "storage", str(valid))
    assert [(c["lang"], c["reason"], c["code"]) for c in res["captures"]] == [
        ("vi", "storage_error", "S2"), ("en", "storage_error", "S2"), ("vi", "outbox_full", "S1"),
        ("en", "outbox_full", "S1")]
    captures += res["captures"]
    for c in captures:
        shown = [t.replace(NBSP, " ") for t in c["texts"]]
        assert c["state"] == "out_of_service" and png_size(SCREENS / c["shot"]) == (800, 480)
        assert not any(w in " ".join(shown) for w in ("OSError", "disk I/O", "StorageFull", "MQTT", "/var/")), shown
        if c["lang"] == "vi":
            assert foreign_words(shown, ("qn-t07", "qn-t09", load_catalogue("vi").text("switch_to"))) == [], shown
            assert any("Kỹ thuật viên" in t or "Cán bộ" in t for t in shown), shown
    vi_codes = {c["code"]: " ".join(c["texts"]).replace(NBSP, " ") for c in captures if c["lang"] == "vi"}
    assert "Mã: S1" in vi_codes["S1"] and "Thiết bị: qn-t09" in vi_codes["S2"]
