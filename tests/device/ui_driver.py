"""Drives the real Kivy terminal under Xvfb with real touches; run by test_ui.py in its own process.

Kivy allows one window per process, so the whole UI scenario runs here:
QMS events go through the real broker, touches are dispatched through the
window's input path (kivy.tests.common.UnitTestTouch) onto the widgets'
centres, and every screen is captured from the displayed frame in vi and en
at 800x480 and 1280x720. Results (expected ratings, screenshots, target
sizes, errors) are written as JSON for the test to check against what the
broker delivered.

    python -m tests.device.ui_driver CONFIG OUT_DIR RESULTS_JSON
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from device.ui.boot import prepare_kivy

prepare_kivy(800, 480, fullscreen=False, home=os.environ.get("KIVY_HOME"))

from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.tests.common import UnitTestTouch  # noqa: E402
from kivy.uix.behaviors import ButtonBehavior  # noqa: E402
from kivy.uix.label import Label  # noqa: E402
from kivy.uix.widget import Widget  # noqa: E402

from broker.contract import DeviceConfigUpdate, QmsEvent, config_topic, qms_topic  # noqa: E402
from broker.mqtt.session import MqttSession  # noqa: E402
from device.config import load_device_config  # noqa: E402
from device.runtime import DeviceRuntime  # noqa: E402
from device.state import State  # noqa: E402
from device.ui import theme  # noqa: E402
from device.ui.app import TerminalApp, kivy_dispatch  # noqa: E402
from device.ui.widgets import BigButton, FaceIcon, FitLabel, LevelTile  # noqa: E402

Step = Generator[Callable[[], bool] | float, None, None]
SIZES = ((800, 480), (1280, 720))


class Driver:
    def __init__(self, config_path: str, out: Path, results: Path) -> None:
        self.cfg = load_device_config(config_path)
        self.out, self.results_path = out, results
        self.rt = DeviceRuntime(self.cfg, kivy_dispatch)
        self.app = TerminalApp(self.rt.terminal, self.cfg.device_id, on_started=self._begin)
        self.qms = MqttSession(self.cfg.mqtt, f"{self.cfg.device_id}-qms")
        self.results: dict[str, Any] = {"expected": [], "screens": [], "targets": [], "errors": [], "latency_ms": [],
                                        "labels": [], "edges": [], "faces": [], "countdown": [],
                                        "texts": []}
        self._gen: Step | None = None
        self._wait: tuple[Callable[[], bool], float] | None = None
        self._n = 0
        self._n_measures = 0

    # ------------------------------------------------------------------ plumbing

    def run(self) -> None:
        if not self.qms.start().wait_connected(10):
            raise RuntimeError(f"QMS stand-in could not connect to {self.cfg.mqtt.url}")
        self.rt.start()
        try:
            self.app.run()
        finally:
            self.rt.stop()
            self.qms.stop()
            self.results_path.write_text(json.dumps(self.results, indent=1), encoding="utf-8")

    def _begin(self, _app: TerminalApp) -> None:
        self._gen = self.script()
        Clock.schedule_interval(self._step, 0.02)

    def _step(self, _dt: float) -> bool:
        try:
            if self._wait is not None:
                cond, deadline = self._wait
                if not cond():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"UI condition not met: {getattr(cond, '__doc__', None) or cond} "
                                           f"(showing {self.app.screens and self.app.screens.current}, "
                                           f"{len(self.results['expected'])} ratings given)")
                    return True
                self._wait = None
            assert self._gen is not None
            item = next(self._gen)
            if isinstance(item, float):
                end = time.monotonic() + item
                self._wait = (lambda: time.monotonic() >= end, end + 5)
            else:
                self._wait = (item, time.monotonic() + 15)
            return True
        except StopIteration:
            self.app.stop()
            return False
        except Exception:
            self.results["errors"].append(traceback.format_exc())
            self.app.stop()
            return False

    def publish(self, kind: str, ticket: str | None = None) -> None:
        ev = QmsEvent(v=1, type=kind, counter=self.cfg.counter, officer="cb01", ticket=ticket,  # type: ignore[arg-type]
                      service="ho-tich" if ticket else None, at=time.time_ns() // 1_000_000)
        self.qms.publish(qms_topic(self.cfg.centre, self.cfg.counter), ev.to_json(), qos=1)

    def state_is(self, state: State) -> Callable[[], bool]:
        def cond() -> bool:
            return self.rt.terminal.state == state and self.app.screens is not None \
                and self.app.screens.current == state.value
        cond.__doc__ = f"screen {state.value}"
        return cond

    @staticmethod
    def until(what: str, cond: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            return cond()
        check.__doc__ = what
        return check

    def row_settled(self) -> bool:
        """The prompt's tile labels refitted to one size (refits run on Clock triggers, a frame or two late)."""
        labels = self.app.current_screen().tile_labels()
        fonts = {lb.font_size for lb in labels}
        return len(fonts) == 1 and all(lb.fitted is not None and lb.fitted.font_size == lb.font_size
                                       and lb.font_cap == min(x.natural_font for x in labels) for lb in labels)

    def settled(self, widget_of: Callable[[], Widget]) -> Callable[[], bool]:
        """True once the widget's place on the window is the same on two polls in a row (a screen whose
        text just grew is laid out over a frame or two: a tap before that may land beside it)."""
        last: list[tuple[float, ...]] = []

        def check() -> bool:
            w = widget_of()
            now = (*w.to_window(*w.pos), *w.size)
            stable = bool(last) and last[-1] == now and w.width > 1 and w.height > 1
            last.append(now)
            return stable
        check.__doc__ = "widget laid out"
        return check

    def tap(self, widget: Widget) -> None:
        """A real touch: down and up at the widget's centre, through the window's input dispatch."""
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()

    def shot(self, name: str) -> None:
        w, h = Window.size
        lang = self.rt.terminal.view.language
        path = self.out / f"{name}_{lang}_{w}x{h}.png"
        written = Window.screenshot(str(path))
        os.replace(written, path)
        self.results["screens"].append({"name": name, "lang": lang, "size": [w, h], "path": str(path)})

    def measure(self) -> None:
        """Everything the test checks on the displayed screen: targets, label cuts, edges, countdown."""
        screen = self.app.current_screen()
        size, lang = list(Window.size), self.rt.terminal.view.language
        self._n_measures += 1
        page = theme.OOS_BG if screen.name == "out_of_service" else theme.PAPER
        for widget in screen.walk():
            if isinstance(widget, ButtonBehavior):  # anything a citizen can touch
                self.results["targets"].append({"screen": screen.name, "size": size, "lang": lang,
                                                "kind": type(widget).__name__, "w": widget.width,
                                                "h": widget.height, "text": getattr(widget, "text", "")})
            if isinstance(widget, BigButton) and widget.bg_hex == theme.SECONDARY:
                self.results["edges"].append({"screen": screen.name, "size": size, "text": widget.text,
                                              "edge": widget.edge_hex, "width": widget.edge_width, "page": page})
            if isinstance(widget, FitLabel) and widget.fitted is not None:
                self.results["labels"].append({
                    "screen": screen.name, "size": size, "lang": lang, "source": widget.source,
                    "call": self._n_measures, "tile": isinstance(widget.parent, LevelTile), "large": self.app.t > 1,
                    "lines": list(widget.fitted.lines), "fits": widget.fitted.fits, "font": widget.font_size,
                    "text": widget.text, "w": widget.width, "h": widget.height,
                    "texture": list(widget.texture_size)})
        # every text drawn on this screen, as the citizen reads it (NBSP shown as a space)
        self.results["texts"].append({"screen": screen.name, "size": size, "lang": lang, "texts": [
            w.text.replace("\u00a0", " ") for w in screen.walk() if isinstance(w, Label) and w.text]})
        if "countdown" in screen.ids:
            self.results["countdown"].append({"screen": screen.name, "lang": lang, "text": screen.ids.countdown.text,
                                              "at": time.monotonic()})

    def faces(self, shot: str) -> None:
        """Where each tile's face is in the last screenshot (image coordinates, top-left origin)."""
        screen = self.app.current_screen()
        _w, h = Window.size
        boxes = {}
        for tile in screen.ids.tiles.children:
            face = next(c for c in tile.walk() if isinstance(c, FaceIcon))
            cx, cy = face.to_window(*face.center)
            boxes[int(tile.score)] = [cx, h - cy, face.radius]
        self.results["faces"].append({"shot": shot, "scale": self.rt.terminal.view.scale, "boxes": boxes})

    # ------------------------------------------------------------------ the scenario

    def script(self) -> Step:
        frame = 0.15  # let the frame after a change be drawn before capturing it
        for size in SIZES:
            Window.size = size
            yield self.until(f"window {size}", lambda s=size: tuple(Window.size) == s)
            yield frame
            for lang in ("vi", "en"):
                self._n += 1
                ticket = f"T-{self._n}"
                self.publish("officer_logout")
                yield self.state_is(State.OUT_OF_SERVICE)
                if lang == "en":  # the citizen's toggle, on screen
                    yield frame
                    self.tap(self.app.current_screen().ids.top.ids.lang)
                    yield self.until("language toggled to en", lambda: self.rt.terminal.view.language == "en")
                yield frame
                self.shot("out_of_service")
                self.measure()
                self.publish("officer_login")
                self.publish("ticket_called", ticket)
                yield self.until("ticket called", lambda t=ticket: self.rt.terminal.view.serving_ticket == t)
                yield self.state_is(State.IDLE)
                yield frame
                self.shot("idle")
                self.measure()
                self.publish("ticket_closed", ticket)
                yield self.state_is(State.PROMPT)
                yield frame
                self.shot("prompt")
                self.measure()
                self.faces(f"prompt_{lang}_{size[0]}x{size[1]}.png")
                if size == SIZES[0]:  # the countdown runs: read it again a second later
                    yield 1.1
                    self.measure()
                self.tap(self.app.current_screen().tile(1))  # Không hài lòng
                yield self.state_is(State.REASONS)
                yield frame  # chips are laid out in the frame after they are created
                screen = self.app.current_screen()
                self.tap(screen.chip("thai_do"))
                self.tap(screen.chip("thoi_gian_cho"))
                yield self.until("both chips chosen",
                                 lambda: self.rt.terminal.view.reasons_chosen == ("thai_do", "thoi_gian_cho"))
                yield frame
                self.shot("reasons")
                self.measure()
                self.tap(screen.ids.send)
                yield self.state_is(State.THANKS)
                yield frame
                self.shot("thanks")
                self.measure()
                self.results["expected"].append({"ticket": ticket, "score": 1,
                                                 "reasons": ["thai_do", "thoi_gian_cho"]})
                yield self.state_is(State.IDLE)
        # two more citizens at 800x480: a top score (no reasons screen) and a low score skipping reasons
        Window.size = SIZES[0]
        yield self.until("window back to 800x480", lambda: tuple(Window.size) == SIZES[0])
        for ticket, score, skip in (("T-top", 4, False), ("T-skip", 2, True)):
            self.publish("ticket_called", ticket)
            self.publish("ticket_closed", ticket)
            yield self.state_is(State.PROMPT)
            yield frame
            t0 = time.perf_counter()
            self.tap(self.app.current_screen().tile(score))
            if skip:
                yield self.state_is(State.REASONS)
                yield frame
                self.tap(self.app.current_screen().ids.skip)
            yield self.state_is(State.THANKS)
            self.results["latency_ms"].append((time.perf_counter() - t0) * 1000)
            self.results["expected"].append({"ticket": ticket, "score": score, "reasons": []})
            yield self.state_is(State.IDLE)
        # a wrong tap undone: "Không hài lòng" by mistake, "Chọn lại" on the reasons screen, then the
        # intended "Hài lòng". Nothing was stored for the mistake: the broker gets one rating, score 3.
        self.publish("ticket_called", "T-undo")
        self.publish("ticket_closed", "T-undo")
        yield self.state_is(State.PROMPT)
        yield frame
        self.tap(self.app.current_screen().tile(1))
        yield self.state_is(State.REASONS)
        yield frame
        self.tap(self.app.current_screen().chip("thai_do"))
        self.tap(self.app.current_screen().ids.back)
        yield self.state_is(State.PROMPT)
        yield frame
        self.results["rechosen"] = self.rt.terminal.stats.rechosen
        self.tap(self.app.current_screen().tile(3))
        yield self.state_is(State.THANKS)
        self.results["expected"].append({"ticket": "T-undo", "score": 3, "reasons": []})
        yield self.state_is(State.IDLE)
        # a citizen who needs larger text taps "Chữ lớn": large text and more time, until THANKS ends
        self.publish("ticket_called", "T-big")
        self.publish("ticket_closed", "T-big")
        yield self.state_is(State.PROMPT)
        yield frame
        self.measure()
        countdown = self.app.current_screen().ids.countdown
        self.results["assist_countdown"] = [countdown.text]
        self.tap(self.app.current_screen().ids.top.ids.assist)
        yield self.until("large text on", lambda: self.rt.terminal.view.large_text and self.app.t > 1)
        yield self.until("tiles refitted at the large size", self.row_settled)
        yield frame
        self.results["assist_countdown"].append(countdown.text)
        self.shot("prompt_large")
        self.measure()
        yield self.until("tile laid out", self.settled(lambda: self.app.current_screen().tile(1)))
        self.tap(self.app.current_screen().tile(1))
        yield self.state_is(State.REASONS)
        yield frame
        yield self.until("skip laid out", self.settled(lambda: self.app.current_screen().ids.skip))
        self.shot("reasons_large")
        self.measure()
        self.tap(self.app.current_screen().ids.skip)
        yield self.state_is(State.THANKS)
        yield frame
        self.shot("thanks_large")
        self.measure()
        self.results["expected"].append({"ticket": "T-big", "score": 1, "reasons": []})
        yield self.state_is(State.IDLE)
        self.results["large_after_thanks"] = self.rt.terminal.view.large_text or self.app.t > 1
        # a supervisor switches this counter to a 5-level scale: retained config update, applied live
        upd = DeviceConfigUpdate(v=1, issued_at=time.time_ns() // 1_000_000, scale=5)
        self.qms.publish(config_topic(self.cfg.centre, self.cfg.device_id), upd.to_json(), qos=1, retain=True)
        yield self.until("scale 5 applied", lambda: self.rt.terminal.view.scale == 5)
        self.publish("ticket_called", "T-five")
        self.publish("ticket_closed", "T-five")
        yield self.state_is(State.PROMPT)
        yield frame
        self.shot("prompt_scale5")
        self.measure()
        self.faces("prompt_scale5_vi_800x480.png")
        self.tap(self.app.current_screen().ids.top.ids.lang)
        yield self.until("language toggled to en", lambda: self.rt.terminal.view.language == "en")
        yield frame
        self.shot("prompt_scale5")
        self.measure()
        Window.size = SIZES[1]
        yield self.until(f"window {SIZES[1]}", lambda: tuple(Window.size) == SIZES[1])
        yield frame
        self.shot("prompt_scale5")
        self.measure()
        self.tap(self.app.current_screen().ids.top.ids.lang)
        yield self.until("language toggled to vi", lambda: self.rt.terminal.view.language == "vi")
        yield frame
        self.shot("prompt_scale5")
        self.measure()
        self.faces("prompt_scale5_vi_1280x720.png")
        self.tap(self.app.current_screen().tile(5))
        yield self.state_is(State.THANKS)
        self.results["expected"].append({"ticket": "T-five", "score": 5, "reasons": [], "scale": 5})
        yield self.state_is(State.IDLE)
        # and to a 3-level scale: "Hài lòng" sits beside "Không hài lòng" (faces compared at both sizes)
        upd = DeviceConfigUpdate(v=1, issued_at=time.time_ns() // 1_000_000, scale=3)
        self.qms.publish(config_topic(self.cfg.centre, self.cfg.device_id), upd.to_json(), qos=1, retain=True)
        yield self.until("scale 3 applied", lambda: self.rt.terminal.view.scale == 3)
        self.publish("ticket_called", "T-three")
        self.publish("ticket_closed", "T-three")
        yield self.state_is(State.PROMPT)
        for size in (SIZES[1], SIZES[0]):
            Window.size = size
            yield self.until(f"window {size}", lambda s=size: tuple(Window.size) == s)
            yield frame
            self.shot("prompt_scale3")
            self.measure()
            self.faces(f"prompt_scale3_vi_{size[0]}x{size[1]}.png")
        self.tap(self.app.current_screen().tile(2))  # Hài lòng: above the reasons threshold
        yield self.state_is(State.THANKS)
        self.results["expected"].append({"ticket": "T-three", "score": 2, "reasons": [], "scale": 3})
        self.qms.publish(config_topic(self.cfg.centre, self.cfg.device_id), b"", qos=1, retain=True)
        self.results["shown"] = sorted({s.value for s in self.app.shown})


def main() -> None:
    config, out, results = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    try:
        Driver(config, out, results).run()
    except BaseException:
        # Kivy routes stderr into its logger; make sure the test sees why we failed
        results.write_text(json.dumps({"errors": [traceback.format_exc()]}), encoding="utf-8")
        raise


if __name__ == "__main__":
    main()
