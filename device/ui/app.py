"""The Kivy app: one ScreenManager, one screen per state, fed by the state machine's View.

Threading: the state machine lives on Kivy's main thread. MQTT and GPIO
callbacks reach it through :func:`kivy_dispatch` (Clock.schedule_once, which
is thread-safe), and the view listener re-checks the thread, so widgets are
only ever touched from the main thread.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import NumericProperty
from kivy.uix.screenmanager import NoTransition, ScreenManager

from ..i18n import load_catalogue
from ..state import State, Terminal, View
from . import theme
from .screens import (
    IdleScreen,
    LaterScreen,
    OutOfServiceScreen,
    PromptScreen,
    ReasonsScreen,
    TerminalScreen,
    ThanksScreen,
)

log = logging.getLogger("hailong.device.ui")
KV_DIR = Path(__file__).parent / "kv"
# Large-text mode: every text a citizen reads 1.3x (the smallest, 22 units, becomes a 3.6 mm cap
# height on the 7" panel instead of 2.8 mm); the layout gives the text the room it takes.
LARGE_TEXT = 1.3
KV_FILES = ("widgets.kv", "idle.kv", "prompt.kv", "reasons.kv", "thanks.kv", "later.kv", "out_of_service.kv")
_loaded = False


def kivy_dispatch(fn: Callable[[], None]) -> None:
    """Run ``fn`` on Kivy's main thread at the next frame (safe to call from any thread)."""
    Clock.schedule_once(lambda _dt: fn(), 0)


def release_free_heap() -> bool:
    """Give the heap's free pages back to the OS (glibc's malloc_trim; False where there is none).

    The first frame of each screen makes the GL driver compile its shader variants: on llvmpipe
    that is an LLVM compile, whose working memory is freed but stays in the process's heap.
    Trimmed once the terminal rests, it no longer counts against the terminal's RSS
    (bench/device_memory.py: about 6 MB).
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def load_kv() -> None:
    global _loaded
    if not _loaded:
        for name in KV_FILES:
            Builder.load_file(str(KV_DIR / name))
        _loaded = True


class Screens(ScreenManager):
    """Routes touches from the screens to the terminal."""

    def __init__(self, terminal: Terminal, **kw: Any) -> None:
        super().__init__(transition=NoTransition(), **kw)
        self.terminal = terminal

    # ScreenManager drops touches while a transition "runs"; ours (NoTransition) has nothing to
    # show, so a citizen tapping the instant a screen appears must not be ignored.
    def on_touch_down(self, touch: Any) -> bool:
        return bool(super(ScreenManager, self).on_touch_down(touch))

    def on_touch_move(self, touch: Any) -> bool:
        return bool(super(ScreenManager, self).on_touch_move(touch))

    def on_touch_up(self, touch: Any) -> bool:
        return bool(super(ScreenManager, self).on_touch_up(touch))

    def press(self, score: int) -> None:
        self.terminal.press(score, "touch")

    def toggle_reason(self, code: str) -> None:
        self.terminal.toggle_reason(code)


class TerminalApp(App):
    u = NumericProperty(1.0)  # layout unit: 1.0 at 480 px high (official 7" display), 1.5 at 720
    t = NumericProperty(1.0)  # text scale: LARGE_TEXT in large-text mode (the terminal's, or the citizen's button)
    seconds_left = NumericProperty(-1)  # whole seconds until the prompt/reasons screen times out; -1: none

    def __init__(self, terminal: Terminal, device_id: str = "", tick_s: float = 0.25,
                 on_started: Callable[[TerminalApp], None] | None = None,
                 on_tick: Callable[[], None] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.on_tick = on_tick  # e.g. the systemd watchdog: proves the UI main loop turns
        self.terminal = terminal
        self.device_id = device_id
        self.tick_s = tick_s
        self.on_started = on_started
        self.title = "hailong"
        self.screens: Screens | None = None
        self.shown: list[State] = []  # every state rendered, for tests
        self._drawn: set[State] = set()  # screens drawn at least once (their first frame grows the heap)
        self._trim_due = False

    def _tick(self) -> None:
        self.terminal.tick()
        self._count_down()
        if self.on_tick is not None:
            self.on_tick()

    def _count_down(self) -> None:
        """The countdown the citizen sees; only on screens that time out by themselves."""
        deadline = self.terminal.next_deadline()
        if deadline is None or self.terminal.state not in (State.PROMPT, State.REASONS):
            self.seconds_left = -1
            return
        left_ms = max(0, deadline - self.terminal.clock.mono_ms())
        self.seconds_left = -(-left_ms // 1000)  # rounded up: "1" until the very end, never "0" while it waits

    def build(self) -> Screens:
        load_kv()
        Window.clearcolor = theme.rgba(theme.PAPER)
        Window.bind(size=self._resize)
        self._resize(Window, Window.size)
        self.screens = Screens(self.terminal)
        for cls in (IdleScreen, PromptScreen, ReasonsScreen, ThanksScreen, LaterScreen, OutOfServiceScreen):
            self.screens.add_widget(cls())
        self.terminal.listeners.append(self.on_view)
        self.show(self.terminal.view)
        Clock.schedule_interval(lambda _dt: self._tick(), self.tick_s)
        if self.on_started is not None:
            cb = self.on_started
            Clock.schedule_once(lambda _dt: cb(self), 0)
        return self.screens

    def _resize(self, _w: object, size: tuple[int, int]) -> None:
        self.u = size[1] / 480

    # ------------------------------------------------------------------ view -> widgets (main thread only)

    def on_view(self, view: View) -> None:
        if threading.current_thread() is threading.main_thread():
            self.show(view)
        else:
            Clock.schedule_once(lambda _dt: self.show(view), 0)

    def show(self, view: View) -> None:
        if self.screens is None:
            return
        self.t = LARGE_TEXT if view.large_text else 1.0
        screen = self.screens.get_screen(view.state.value)
        assert isinstance(screen, TerminalScreen)
        screen.update(view, load_catalogue(view.language), self.device_id)
        if self.screens.current != view.state.value:
            self.screens.current = view.state.value
        self._count_down()
        self.shown.append(view.state)
        if view.state not in self._drawn:
            self._drawn.add(view.state)
            self._trim_due = True
        if self._trim_due and view.state in (State.IDLE, State.OUT_OF_SERVICE):
            # at rest, never between a tap and "Cảm ơn": the trim walks the heap (a few ms)
            self._trim_due = False
            Clock.schedule_once(lambda _dt: self._trim_if_resting(), 2.0)

    def _trim_if_resting(self) -> None:
        if self.terminal.state in (State.IDLE, State.OUT_OF_SERVICE):
            release_free_heap()
        else:
            self._trim_due = True  # a citizen arrived first: trim at the next rest

    # ------------------------------------------------------------------ touches from kv

    def toggle_language(self) -> None:
        self.terminal.set_language("en" if self.terminal.view.language == "vi" else "vi")

    def toggle_assist(self) -> None:
        self.terminal.set_assist(not self.terminal.view.assist)

    def submit_reasons(self) -> None:
        self.terminal.submit_reasons()

    def skip_reasons(self) -> None:
        self.terminal.skip_reasons()

    def rechoose(self) -> None:
        self.terminal.rechoose()

    def current_screen(self) -> TerminalScreen:
        assert self.screens is not None
        screen = self.screens.current_screen
        assert isinstance(screen, TerminalScreen)
        return screen
