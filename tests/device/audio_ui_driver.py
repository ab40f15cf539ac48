"""The real Kivy terminal with spoken prompts, tapped under Xvfb; run by test_audio.py in its own process.

SDL_AUDIODRIVER / SDL_DISKAUDIOFILE come from the test (SDL's disk driver). Touches go through
the window's input path onto the widgets' centres. The scenario, one citizen after another:

1. ticket A-1 closes: the question and the level names; a tap on "Không hài lòng";
   the reasons question; a tap on "Gửi"; the thanks + "Không hài lòng";
2. ticket A-2 closes: a tap on "Rất hài lòng" while the question still plays; the thanks.

Writes JSON: the speaker's sequences, on which thread each was queued, the screens shown.

    python -m tests.device.audio_ui_driver CONFIG RESULTS_JSON
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from device.ui.boot import prepare_kivy

prepare_kivy(800, 480, fullscreen=False, home=os.environ.get("KIVY_HOME"))

from kivy.clock import Clock  # noqa: E402
from kivy.tests.common import UnitTestTouch  # noqa: E402
from kivy.uix.widget import Widget  # noqa: E402

from broker.contract import QmsEvent  # noqa: E402
from device.config import load_device_config  # noqa: E402
from device.runtime import DeviceRuntime  # noqa: E402
from device.state import State  # noqa: E402
from device.ui.app import TerminalApp, kivy_dispatch  # noqa: E402

Step = Generator[Callable[[], bool] | float, None, None]


class Driver:
    def __init__(self, config_path: str, results: Path) -> None:
        self.cfg = load_device_config(config_path)
        self.results_path = results
        self.rt = DeviceRuntime(self.cfg, kivy_dispatch)  # the MQTT link is not started: no broker needed
        assert self.rt.speaker is not None, "the config must enable audio"
        self.speaker = self.rt.speaker
        self.app = TerminalApp(self.rt.terminal, self.cfg.device_id, on_started=self._begin)
        self.results: dict[str, Any] = {"sequences": [], "threads": [], "screens": [], "errors": []}
        orig = self.speaker.play

        def play(*names: str) -> None:
            self.results["sequences"].append(list(names))
            self.results["threads"].append(threading.current_thread() is threading.main_thread())
            orig(*names)

        self.speaker.play = play  # type: ignore[method-assign]
        self._gen: Step | None = None
        self._wait: tuple[Callable[[], bool], float] | None = None

    def _begin(self, _app: TerminalApp) -> None:
        self._gen = self.scenario()
        Clock.schedule_interval(self._step, 0.02)

    def _step(self, _dt: float) -> None:
        assert self._gen is not None
        if self._wait is not None:
            cond, deadline = self._wait
            if not cond():
                if time.monotonic() > deadline:
                    self.results["errors"].append(f"timed out waiting in {self._gen.gi_frame}")
                    self._finish()
                return
            self._wait = None
        try:
            nxt = next(self._gen)
        except StopIteration:
            self._finish()
            return
        except Exception:
            self.results["errors"].append(traceback.format_exc())
            self._finish()
            return
        if callable(nxt):
            self._wait = (nxt, time.monotonic() + 20)
        else:
            until = time.monotonic() + float(nxt)
            self._wait = (lambda: time.monotonic() >= until, until + 60)

    def _finish(self) -> None:
        Clock.unschedule(self._step)
        self.app.stop()

    def tap(self, widget: Widget) -> None:
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()

    def close(self, ticket: str) -> None:
        self.rt.terminal.on_qms(QmsEvent(v=1, type="ticket_closed", counter=self.cfg.counter, officer="cb01",
                                         ticket=ticket, at=time.time_ns() // 1_000_000))

    def saw(self, state: State) -> Callable[[], bool]:
        """True once ``state`` has been drawn since this call (TerminalApp.shown lists every state drawn):
        a poll of the current screen could miss a short thank-you on a loaded machine."""
        mark = len(self.app.shown)

        def check() -> bool:
            if state not in self.app.shown[mark:]:
                return False
            if not self.results["screens"] or self.results["screens"][-1] != state.value:
                self.results["screens"].append(state.value)
            return True
        return check

    def scenario(self) -> Step:
        term = self.rt.terminal
        idle = self.saw(State.IDLE)
        term.on_qms(QmsEvent(v=1, type="officer_login", counter=self.cfg.counter, officer="cb01", at=0))
        yield idle
        prompt = self.saw(State.PROMPT)
        self.close("A-1")
        yield prompt
        yield self.speaker.idle  # the whole question and level names
        reasons = self.saw(State.REASONS)
        self.tap(self.app.current_screen().tile(1))
        yield reasons
        yield self.speaker.idle
        thanks, idle = self.saw(State.THANKS), self.saw(State.IDLE)
        self.tap(self.app.current_screen().ids["send"])
        yield thanks
        yield self.speaker.idle
        yield idle
        prompt = self.saw(State.PROMPT)
        self.close("A-2")
        yield prompt
        yield 0.3  # the question has begun (it lasts about 1.5 s at the test's pace); the tiles are laid out
        thanks = self.saw(State.THANKS)
        for _ in range(3):  # a touch in the very frame the prompt is re-laid out can miss (bench/device_latency.py)
            self.tap(self.app.current_screen().tile(4))
            until = time.monotonic() + 3.0
            yield lambda until=until: thanks() or time.monotonic() > until
            if thanks():
                break
            self.results["retaps"] = self.results.get("retaps", 0) + 1
        yield thanks
        yield self.speaker.idle
        yield 0.1

    def run(self) -> None:
        try:
            self.app.run()
        finally:
            self.rt.stop()  # closes the audio device: SDL flushes the file
            self.results["drafts"] = self.rt.terminal.stats.rated
            self.results_path.write_text(json.dumps(self.results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    try:
        Driver(sys.argv[1], Path(sys.argv[2])).run()
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
        raise
