"""Benchmark: tap -> "Cảm ơn" frame on the real Kivy terminal, including the outbox commit.

    python bench/device_latency.py [--taps 120] [--audio]

Starts its own Xvfb (unless DISPLAY is set) and a private Mosquitto, runs the
terminal with its SQLite outbox on disk (bench/out/, not tmpfs, so the fsync of
synchronous=FULL is real), and for each citizen: closes a ticket, waits for the
prompt frame, dispatches a touch on a level tile through the window's input
path, and stops the clock at the first frame flipped with the THANKS screen.
Also reports the outbox commit alone. Prints a JSON summary.

``--audio``: spoken prompts on, as a terminal with a speaker runs them: the clips made by
espeak-ng (firmware_config/sounds.py), played by SDL's disk audio driver at a sound card's
pace (to /dev/shm, not the outbox's disk) unless SDL_AUDIODRIVER names another. Every prompt then
starts the question and the level names, every tap cuts them for the thanks; the summary adds
how long the speaker's calls took on the UI thread and how many seconds of sound were played.
bench/device_audio.py runs this with and without audio, alternately, in one go.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hailong.localstack import XvfbServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "device"
PROMPT_SETTLE_S = float(os.environ.get("BENCH_SETTLE", "0.1"))
PLAYED = Path(os.environ.get("SDL_DISKAUDIOFILE") or
              (f"/dev/shm/hailong-bench-{os.getpid()}.raw" if Path("/dev/shm").is_dir() else OUT / "played.raw"))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def start_xvfb() -> XvfbServer | None:
    from hailong.localstack import XvfbServer

    if os.environ.get("DISPLAY"):
        return None
    xvfb = XvfbServer(range(200, 300)).start()
    os.environ["DISPLAY"] = xvfb.display
    return xvfb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--taps", type=int, default=120)
    ap.add_argument("--audio", action="store_true", help="spoken prompts on (SDL disk driver unless set)")
    args = ap.parse_args()
    xvfb = start_xvfb()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    from device.ui.boot import prepare_kivy

    prepare_kivy(800, 480, home=tempfile.mkdtemp(prefix="kivy-bench-"))
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.tests.common import UnitTestTouch

    from broker.contract import QmsEvent
    from device.config import DeviceConfig
    from device.runtime import DeviceRuntime
    from device.state import State
    from device.ui.app import TerminalApp, kivy_dispatch
    from hailong.localstack import MosquittoServer

    audio: dict[str, object] = {}
    if args.audio:
        from firmware_config.sounds import write_clips

        write_clips("vi", OUT / "sounds")
        os.environ.setdefault("SDL_AUDIODRIVER", "disk")
        # on tmpfs: the outbox's fsync (synchronous=FULL) must not also flush a growing sound file
        # that only stands in for a sound card
        os.environ.setdefault("SDL_DISKAUDIOFILE", str(PLAYED))
        audio = {"enabled": True, "dir": str(OUT / "sounds"), "recorded_dir": str(OUT / "recorded")}
    broker = MosquittoServer(OUT / "mosquitto").start()
    cfg = DeviceConfig.model_validate({
        "device_id": "bench-t01", "centre": "bench", "counter": "q01", "centre_name": "Trung tâm Phục vụ HCC",
        "counter_label": "Quầy 1", "officer_names": {"cb01": "Nguyễn Thị Lan"}, "thanks_s": 0.5,
        "fullscreen": False, "outbox": {"path": str(OUT / "outbox.sqlite3")}, **({"audio": audio} if audio else {}),
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                 "password": broker.password},
    })
    rt = DeviceRuntime(cfg, kivy_dispatch)
    app = TerminalApp(rt.terminal, cfg.device_id)
    term = rt.terminal
    taps: list[float] = []
    commits: list[float] = []
    orig_commit = rt.outbox.commit

    def timed_commit(draft):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_commit(draft)
        finally:
            commits.append((time.perf_counter() - t) * 1000)

    rt.outbox.commit = timed_commit  # type: ignore[method-assign]
    speaker_calls: list[float] = []  # the speaker's work on the UI thread (queueing clips), per view or press
    if rt.speaker is not None:
        sp = rt.speaker
        orig_play = sp.play

        def timed_play(*names: str) -> None:
            t = time.perf_counter()
            try:
                orig_play(*names)
            finally:
                speaker_calls.append((time.perf_counter() - t) * 1000)

        sp.play = timed_play  # type: ignore[method-assign]
    st: dict[str, float | int | str] = {"phase": "close", "n": 0, "t0": 0.0, "since": 0.0}

    def on_flip(*_a: object) -> None:
        if st["phase"] == "tapped" and term.state == State.THANKS and app.screens is not None \
                and app.screens.current == "thanks":
            taps.append((time.perf_counter() - float(st["t0"])) * 1000)
            st["phase"] = "wait_idle"

    def step(_dt: float) -> None:
        phase = st["phase"]
        if os.environ.get("BENCH_DEBUG"):
            print(phase, term.state, st["n"], file=sys.__stderr__)
        now = time.monotonic()
        if phase == "close":
            n = int(st["n"])
            if n >= args.taps:
                app.stop()
                return
            term.on_qms(QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=0)) if n == 0 else None
            term.on_qms(QmsEvent(v=1, type="ticket_closed", counter="q01", officer="cb01", ticket=f"B-{n}",
                                 at=time.time_ns() // 1_000_000))
            st.update(phase="prompt", since=now)
        elif phase == "prompt" and term.state == State.PROMPT and now - float(st["since"]) > PROMPT_SETTLE_S:
            screen = app.current_screen()
            tile = screen.tile(4 - int(st["n"]) % 2)  # top two levels: no reasons screen in between
            x, y = tile.to_window(*tile.center)
            if os.environ.get("BENCH_DEBUG"):
                print("tap", x, y, tile.size, Window.size, app.screens.current, file=sys.__stderr__)
            touch = UnitTestTouch(x, y)
            st.update(phase="tapped", t0=time.perf_counter())
            touch.touch_down()
            touch.touch_up()
        elif phase == "tapped" and time.perf_counter() - float(st["t0"]) > 2.0:
            st.update(phase="prompt", since=now, missed=int(st.get("missed", 0)) + 1)  # tap lost: tap again
        elif phase == "wait_idle" and term.state == State.IDLE:
            st.update(phase="close", n=int(st["n"]) + 1)

    def begin(_app: TerminalApp) -> None:
        Window.bind(on_flip=on_flip)
        Window.size = (800, 480)
        # let the window settle (first frames, size) before the first citizen
        Clock.schedule_once(lambda _dt: Clock.schedule_interval(step, 0.01), 1.0)

    app.on_started = begin
    rt.start()
    try:
        app.run()
    finally:
        rt.stop()
        broker.stop()
    result = {
        "taps": len(taps),
        "tap_to_thanks_ms": {"p50": round(statistics.median(taps), 1), "p99": round(pct(taps, 99), 1),
                             "max": round(max(taps), 1)},
        # the same taps without their outbox commit: what the UI path itself costs
        "tap_to_thanks_minus_commit_ms": {"p50": round(statistics.median(ui := [t - c for t, c in zip(taps, commits,
                                                                                                   strict=False)]), 1),
                                          "p99": round(pct(ui, 99), 1)},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "outbox_commit_ms": {"p50": round(statistics.median(commits), 2), "p99": round(pct(commits, 99), 2)},
        "maxfps": int(os.environ.get("HAILONG_KIVY_MAXFPS", "30")),
        "missed_taps": st.get("missed", 0),
        "ignored_presses": dict(term.stats.ignored),
        "audio": bool(args.audio),
    }
    if rt.speaker is not None:
        played = PLAYED
        result["speaker_play_ms"] = {"n": len(speaker_calls), "p50": round(statistics.median(speaker_calls), 3),
                                     "p99": round(pct(speaker_calls, 99), 3), "max": round(max(speaker_calls), 3)}
        result["sequences"] = len(rt.speaker.played)
        result["audio_driver"] = os.environ.get("SDL_AUDIODRIVER", "")
        if played.is_file():  # mono 16-bit 22.05 kHz: what SDL's thread played (silence included)
            result["seconds_of_sound_played"] = round(played.stat().st_size / (2 * 22050), 1)
            if str(played).startswith("/dev/shm/"):
                played.unlink()
    print(json.dumps(result, indent=1), flush=True)
    if xvfb is not None:  # last: Xlib exits the process when its server goes away
        xvfb.stop(wait=False)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        import traceback

        traceback.print_exc(file=sys.__stderr__)  # Kivy replaces sys.stderr with its logger
        raise
