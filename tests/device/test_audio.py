"""Spoken prompts through the real SDL2 audio queue, recorded by SDL's file-writing driver.

SDL_AUDIODRIVER=disk makes SDL's own audio thread write every sample it plays to
SDL_DISKAUDIOFILE instead of a sound card (SDL_DISKAUDIODELAY=2: a 46 ms buffer every
2 ms, so speech plays ~20x faster than on a speaker; silence is written as zeros). The
clips are the real ones, made by espeak-ng's Vietnamese voice as provisioning makes them.
The tests read the bytes played: which clips, in which order, nothing else.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.contract import QmsEvent
from device.audio import SdlOutput, Speaker, clip_names
from device.config import AudioSettings
from device.i18n import load_catalogue
from device.runtime import DeviceRuntime
from device.state import Terminal
from firmware_config.sounds import write_clips
from tests.support.waiting import wait_until

from .fakes import T0_WALL, FakeClock, MemorySink, make_config

VI = load_catalogue("vi")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sounds")
    write_clips("vi", folder)
    return folder


@pytest.fixture
def disk_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "played.raw"
    monkeypatch.setenv("SDL_AUDIODRIVER", "disk")
    monkeypatch.setenv("SDL_DISKAUDIOFILE", str(out))
    monkeypatch.setenv("SDL_DISKAUDIODELAY", "2")
    return out


@pytest.fixture
def speaker(clips: Path, disk_audio: Path, tmp_path: Path) -> Iterator[Speaker]:
    s = Speaker(AudioSettings(enabled=True, dir=clips, recorded_dir=tmp_path / "recorded"), VI)
    yield s
    s.close()


def qms(kind: str, ticket: str | None = None, at: int = T0_WALL) -> QmsEvent:
    return QmsEvent(v=1, type=kind, counter="q01", officer="cb01", ticket=ticket, at=at)  # type: ignore[arg-type]


def finish(speaker: Speaker) -> None:
    wait_until(speaker.idle, 20, 0.01, what="the queued clips played")
    time.sleep(0.05)  # SDL's last buffer written


def first_sound(raw: bytes, pos: int = 0) -> int:
    """Byte offset of the first non-zero 16-bit sample at or after ``pos`` (len(raw) if none)."""
    for i in range(pos - pos % 2, len(raw) - 1, 2):
        if raw[i] or raw[i + 1]:
            return i
    return len(raw)


def played(raw: bytes, pcm: dict[str, bytes], stop_at_unknown: bool = False) -> list[str]:
    """The clips in ``raw``, in order; fails if any sound in it is not one of them, whole.

    With ``stop_at_unknown`` the parse ends at the first sound that is no whole clip and the
    last entry is ``"?<byte offset>"`` (a clip cut short by the next sequence starts there)."""
    sounds = {n: p[first_sound(p):] for n, p in pcm.items()}  # a clip's leading silence merges with the gap
    names, pos = [], 0
    while (start := first_sound(raw, pos)) < len(raw):
        found = [n for n, p in sounds.items() if raw.startswith(p, start)]
        if not found and stop_at_unknown:
            return [*names, f"?{start}"]
        assert found, f"a sound at byte {start} that is no whole clip: {raw[start:start + 16].hex()}"
        name = max(found, key=lambda n: len(sounds[n]))
        names.append(name)
        pos = start + len(sounds[name])
    return names


def sequence(speaker: Speaker, out: Path) -> list[str]:
    speaker.close()  # SDL flushes and closes the file
    return played(out.read_bytes(), speaker.pcm)


def test_clips_are_made_for_every_name_with_the_vietnamese_voice(clips: Path) -> None:
    names = clip_names(VI)
    assert sorted(p.stem for p in clips.glob("*.wav")) == sorted(names)
    assert {"question", "thanks", "wait", "not-now", "already", "level-rat-hai-long", "level-hai-long",
            "level-binh-thuong", "level-khong-hai-long", "level-rat-khong-hai-long"} <= set(names)
    for p in clips.glob("*.wav"):
        with wave.open(str(p)) as w:
            seconds = w.getnframes() / w.getframerate()
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
            assert 0.2 < seconds < 12, (p.name, seconds)
    # the question is spoken, not a tone: several seconds
    with wave.open(str(clips / "question.wav")) as w:
        assert w.getnframes() / w.getframerate() > 3


def test_touch_flow_plays_question_levels_reasons_thanks_in_order(speaker: Speaker, disk_audio: Path) -> None:
    term = Terminal(make_config(), MemorySink(), FakeClock())
    term.listeners.append(speaker.on_view)
    term.press_listeners.append(speaker.on_press)
    term.on_qms(qms("officer_login"))
    term.on_qms(qms("ticket_closed", "A-1"))
    finish(speaker)
    term.press(1, "touch")  # "Không hài lòng": the reasons screen asks why
    finish(speaker)
    term.toggle_reason("thai_do")
    term.submit_reasons()
    finish(speaker)
    assert sequence(speaker, disk_audio) == [
        "question", "level-rat-hai-long", "level-hai-long", "level-binh-thuong", "level-khong-hai-long",
        "reasons", "thanks", "level-khong-hai-long"]


def test_button_flow_too_early_thanks_already_rated_not_now(speaker: Speaker, disk_audio: Path) -> None:
    cfg = make_config(scale=3, hardware="buttons", gpio={"buttons": {1: 5, 2: 6, 3: 13}})
    clock = FakeClock()
    term = Terminal(cfg, MemorySink(), clock)
    term.listeners.append(speaker.on_view)
    term.press_listeners.append(speaker.on_press)

    def press(score: int) -> None:
        clock.advance(1000)
        term.press(score, "button")
        finish(speaker)

    term.on_qms(qms("officer_login"))
    press(2)  # before the officer closed the ticket
    term.on_qms(qms("ticket_closed", "A-2", at=clock.wall))
    finish(speaker)
    press(2)  # "Hài lòng" on a 3-level unit: stored, thanked
    press(2)  # again, on the thank-you
    clock.advance(3000)
    term.tick()
    term.on_qms(qms("officer_logout"))
    press(3)  # out of service
    assert sequence(speaker, disk_audio) == [
        "wait", "question", "level-rat-hai-long", "level-hai-long", "level-khong-hai-long",
        "thanks", "level-hai-long", "not-now", "already", "not-now"]


def test_a_tap_during_the_question_cuts_it_for_the_thanks(speaker: Speaker, disk_audio: Path) -> None:
    term = Terminal(make_config(), MemorySink(), FakeClock())
    term.listeners.append(speaker.on_view)
    term.on_qms(qms("ticket_closed", "A-3"))
    time.sleep(0.03)  # the question has begun (about 0.6 s of speech at the driver's pace)
    term.press(4, "touch")
    finish(speaker)
    speaker.close()
    raw = disk_audio.read_bytes()
    question, thanks = speaker.pcm["question"], speaker.pcm["thanks"]
    assert question not in raw and raw.find(thanks) > 0  # cut short, then the whole thanks
    assert raw.find(thanks) + len(thanks) == raw.find(speaker.pcm["level-rat-hai-long"], raw.find(thanks))
    assert raw.lstrip(b"\0")[:4096] == question.lstrip(b"\0")[:4096]  # what played first was the question


def test_a_silent_terminal_plays_nothing(clips: Path, disk_audio: Path, tmp_path: Path) -> None:
    """Audio off (the default): no device is opened, not a byte written, whatever happens."""
    cfg = make_config(outbox={"path": str(tmp_path / "o.sqlite3")})
    assert cfg.audio.enabled is False
    rt = DeviceRuntime(cfg, lambda fn: fn(), FakeClock())
    try:
        assert rt.speaker is None
        rt.terminal.on_qms(qms("officer_login"))
        rt.terminal.press(4, "button")
        rt.terminal.on_qms(qms("ticket_closed", "A-4"))
        rt.terminal.press(4, "touch")
        time.sleep(0.2)
    finally:
        rt.outbox.close()
    assert not disk_audio.exists()
    # and the same runtime with audio on does speak
    on = cfg.model_copy(update={"audio": AudioSettings(enabled=True, dir=clips, recorded_dir=tmp_path / "r")})
    rt = DeviceRuntime(on, lambda fn: fn(), FakeClock())
    try:
        assert rt.speaker is not None
        rt.terminal.on_qms(qms("officer_login"))
        rt.terminal.press(4, "button")
        finish(rt.speaker)
    finally:
        rt.stop()
    assert played(disk_audio.read_bytes(), rt.speaker.pcm) == ["wait"]


def _recording(seconds: float, rate: int, channels: int) -> bytes:
    """A stand-in for a recorded WAV: a rising sweep at another rate and channel count."""
    import math

    frames = bytearray()
    n = int(seconds * rate)
    for i in range(n):
        v = round(12000 * math.sin(2 * math.pi * (300 + 400 * i / n) * i / rate)).to_bytes(2, "little", signed=True)
        frames += v * channels
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def test_a_recorded_wav_replaces_the_generated_clip(clips: Path, disk_audio: Path, tmp_path: Path) -> None:
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    (recorded / "thanks.wav").write_bytes(_recording(0.8, 44100, 2))  # a CD-quality stereo recording
    settings = AudioSettings(enabled=True, dir=clips, recorded_dir=recorded, volume=100)
    s = Speaker(settings, VI)
    generated = SdlOutput().load(clips / "thanks.wav", 100)
    assert s.pcm["thanks"] != generated
    assert abs(len(s.pcm["thanks"]) - 0.8 * 22050 * 2) < 64  # converted to the output's mono 22.05 kHz
    s.play("thanks", "level-hai-long")
    finish(s)
    assert sequence(s, disk_audio) == ["thanks", "level-hai-long"]
    assert generated not in disk_audio.read_bytes()


def test_volume_scales_what_is_played(clips: Path, disk_audio: Path, tmp_path: Path) -> None:
    out = SdlOutput()
    loud, half = out.load(clips / "wait.wav", 100), out.load(clips / "wait.wav", 50)
    peak = max(abs(int.from_bytes(loud[i:i + 2], "little", signed=True)) for i in range(0, len(loud), 2))
    peak_half = max(abs(int.from_bytes(half[i:i + 2], "little", signed=True)) for i in range(0, len(half), 2))
    assert peak > 3000 and abs(peak_half - peak * 64 / 128) <= 2


def test_missing_clips_stop_the_terminal_at_start_naming_file_and_key(tmp_path: Path, clips: Path) -> None:
    from hailong.cli import main

    empty = tmp_path / "sounds"
    empty.mkdir()
    f = tmp_path / "device.toml"
    f.write_text('device_id = "d1"\ncentre = "c1"\ncounter = "q1"\ncentre_name = "C"\ncounter_label = "Q"\n'
                 '[audio]\nenabled = true\ndir = "sounds"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["device", "run", "--config", str(f)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"config error in {f}: audio.dir: clips missing: {empty}/question.wav" in res.output
    with pytest.raises(ValueError, match="not a WAV file"):
        (empty / "bad.wav").write_text("not audio")
        SdlOutput().load(empty / "bad.wav", 80)


def test_audio_keys_are_checked() -> None:
    for bad, key in (({"volume": 101}, "volume"), ({"voice": "en"}, "voice"), ({"loud": True}, "loud")):
        with pytest.raises(ValueError, match=key):
            make_config(audio=bad)
    cfg: Any = make_config(audio={"enabled": True, "voice": "vi-vn-x-south", "volume": 60})
    assert (cfg.audio.enabled, cfg.audio.voice, cfg.audio.volume) == (True, "vi-vn-x-south", 60)
    assert os.fspath(cfg.audio.dir) == "/usr/local/lib/hailong/sounds"


def test_kivy_terminal_speaks_in_order_and_queues_on_the_ui_thread(xvfb: str, clips: Path, tmp_path: Path) -> None:
    """The real Kivy window under Xvfb, real touches: prompt, a low tap, the reasons' Gửi, thanks; then a tap
    that cuts the next question short. SDL's disk driver records what was played (at ~4.6x a speaker's pace)."""
    out = tmp_path / "played.raw"
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        'device_id = "a-t01"\ncentre = "c-audio"\ncounter = "q01"\ncentre_name = "Trung tâm Phục vụ HCC"\n'
        'counter_label = "Quầy 1"\nfullscreen = false\nthanks_s = 1.5\n[officer_names]\ncb01 = "Nguyễn Thị Lan"\n'
        f'[outbox]\npath = "{tmp_path / "o.sqlite3"}"\n[audio]\nenabled = true\ndir = "{clips}"\n'
        f'recorded_dir = "{tmp_path / "none"}"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n', encoding="utf-8")
    results = tmp_path / "results.json"
    env = {**os.environ, "DISPLAY": xvfb, "KIVY_HOME": str(tmp_path / "kivy"), "SDL_AUDIODRIVER": "disk",
           "SDL_DISKAUDIOFILE": str(out), "SDL_DISKAUDIODELAY": "10"}
    proc = subprocess.run([sys.executable, "-m", "tests.device.audio_ui_driver", str(cfg), str(results)],
                          env=env, capture_output=True, text=True, timeout=180, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(results.read_text(encoding="utf-8"))
    assert r["errors"] == [] and r["drafts"] == 2
    assert r["screens"] == ["idle", "prompt", "reasons", "thanks", "idle", "prompt", "thanks"]
    levels = ["level-rat-hai-long", "level-hai-long", "level-binh-thuong", "level-khong-hai-long"]
    assert r["sequences"] == [["question", *levels], ["reasons"], ["thanks", "level-khong-hai-long"],
                              ["question", *levels], ["thanks", "level-rat-hai-long"]]
    assert all(r["threads"]), "every sequence is queued from Kivy's main thread (and returns at once)"
    # the bytes SDL played: whole clips in that order, the second question cut short by the tap
    out_ = SdlOutput()
    pcm = {n: out_.load(clips / f"{n}.wav", 80) for n in clip_names(VI)}
    raw = out.read_bytes()
    first = played(raw, pcm, stop_at_unknown=True)
    assert first[:-1] == ["question", *levels, "reasons", "thanks", "level-khong-hai-long"]
    cut = int(first[-1][1:])
    question = pcm["question"][first_sound(pcm["question"]):]
    head = raw[cut:cut + 8192]
    assert question.startswith(head) and question not in raw[cut:]  # the question began, and was cut
    rest = raw.find(pcm["thanks"][first_sound(pcm["thanks"]):], cut)
    assert rest > cut and played(raw[rest - rest % 2:], pcm) == ["thanks", "level-rat-hai-long"]
