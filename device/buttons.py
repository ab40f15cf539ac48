"""Physical rating buttons, their LEDs and an optional buzzer on GPIO (gpiozero).

A unit a citizen can use without the screen (docs/device.md has the hardware spec):
one :class:`gpiozero.Button` per score, an LED beside each, an optional buzzer.

A press counts only when the button has stayed down for ``hold_ms`` (default 20 ms):
a glitch on a long cable or a brushing hand records nothing. It is judged twice so a
late timer cannot lose a real press: ``hold_ms`` after the falling edge the button must
still be held, or, if the release came first, the two edges must be ``hold_ms`` apart.
After that, one clock for all buttons: a contact that bounces, or a hand on two
buttons, gives one press per ``debounce_ms``. (gpiozero's own bounce_time depends on
the pin driver and is not implemented by its MockFactory; doing it here behaves the
same on the Pi and in tests.) The pin factory is injected: real pins on the Pi,
``gpiozero.pins.mock.MockFactory`` in tests.

LEDs follow the terminal: all lit while a prompt waits for a press; after a press
only the pressed one, blinking on THANKS (lit steady while reasons are chosen on a
screen); all dark otherwise. Every press the terminal judges is answered
(:meth:`ButtonPanel.feedback`), so a citizen who cannot see the screen knows what
happened:

===============  ==================================  =====================================
outcome          LEDs                                buzzer (active / tonal)
===============  ==================================  =====================================
accepted         the pressed one blinks (THANKS)     one long beep / rising C6-G6
too early        all: two slow flashes               two short beeps / two A5
already rated    all: three quick flashes            three very short beeps / falling E6-C6
not now          all: one long flash                 one long low tone / A4
===============  ==================================  =====================================
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import GpioSettings
from .state import InputKind, Outcome, PressFeedback, State, View

log = logging.getLogger("hailong.device.buttons")

Dispatch = Callable[[Callable[[], None]], None]
_EPS = 1e-9  # a press held exactly hold_ms counts, whatever float rounding the tick clock does


@dataclass(frozen=True)
class Signal:
    """One outcome's LED flashes and buzzer beeps (seconds); tones in Hz for a tonal buzzer."""

    flashes: int  # all LEDs; 0: the view's own LED pattern says it (accepted)
    flash_on: float
    flash_off: float
    beeps: int
    beep_on: float
    beep_off: float
    tones: tuple[float, ...]


SIGNALS: dict[Outcome, Signal] = {
    Outcome.ACCEPTED: Signal(0, 0, 0, 1, 0.4, 0.0, (1047.0, 1568.0)),
    Outcome.TOO_EARLY: Signal(2, 0.3, 0.3, 2, 0.15, 0.15, (880.0, 880.0)),
    Outcome.ALREADY_RATED: Signal(3, 0.1, 0.1, 3, 0.07, 0.07, (1319.0, 1047.0)),
    Outcome.NOT_NOW: Signal(1, 0.8, 0.0, 1, 0.8, 0.0, (440.0,)),
}


class ButtonPanel:
    def __init__(self, gpio: GpioSettings, *, press: Callable[[int, InputKind], object],
                 served: Callable[[], None] | None = None, dispatch: Dispatch = lambda fn: fn(),
                 pin_factory: Any = None) -> None:
        from gpiozero import LED, Button

        self._press = press
        self._pin_factory = pin_factory
        self._clock: Any = None  # the pin factory's clock (ticks), set once the first pin exists
        self._served = served
        self._dispatch = dispatch
        self._debounce_s = gpio.debounce_ms / 1000
        self._hold_s = gpio.hold_ms / 1000
        self._last: float | None = None  # when the last press was taken (the debounce clock)
        self._lock = threading.Lock()
        self._down: dict[str, tuple[float, int]] = {}  # button -> (falling edge time, press token)
        self._token = 0
        self.presses = 0  # accepted (held and debounced) presses, for diagnostics and tests
        self.glitches = 0  # presses released before hold_ms: nothing recorded
        self.buttons: dict[int, Button] = {}
        self.leds: dict[int, LED] = {}
        self.served_button: Button | None = None
        for score, pin in sorted(gpio.buttons.items()):
            self.buttons[score] = self._button(Button, pin, gpio, f"score_{score}", self._pressed(score))
        for score, pin in sorted(gpio.leds.items()):
            self.leds[score] = LED(pin, pin_factory=pin_factory)
        if gpio.served_pin is not None:
            self.served_button = self._button(Button, gpio.served_pin, gpio, "served", self._on_served)
        self.buzzer: Any = None
        if gpio.buzzer_pin is not None:
            from gpiozero import Buzzer, TonalBuzzer

            # two octaves around A4 (110-1760 Hz): room for the signals' tones
            self.buzzer = (TonalBuzzer(gpio.buzzer_pin, octaves=2, pin_factory=pin_factory) if gpio.buzzer_tonal
                           else Buzzer(gpio.buzzer_pin, pin_factory=pin_factory))
        self._view: View | None = None
        self._shown: tuple[State, int | None] | None = None
        self._signal = 0  # generation of the running feedback; a newer one cancels it
        self._signal_done = threading.Event()
        self._signal_done.set()
        self._closing = threading.Event()  # wakes a running signal's sleeps at close
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ presses

    def _button(self, cls: Any, pin: int, gpio: GpioSettings, name: str, accept: Callable[[], None]) -> Any:
        b = cls(pin, pull_up=gpio.pull_up, pin_factory=self._pin_factory)
        b.when_pressed = lambda: self._on_down(name, b, accept)
        b.when_released = lambda: self._on_up(name, accept)
        return b

    # Times come from the pin factory's clock (gpiozero's ticks: monotonic seconds for lgpio and the
    # mock), the clock the pin events are stamped with; a test factory can step it explicitly.
    def _ticks(self) -> float:
        if self._clock is None:
            from gpiozero import Device

            self._clock = self._pin_factory or Device.pin_factory
        return float(self._clock.ticks())

    def _since(self, earlier: float) -> float:
        return float(self._clock.ticks_diff(self._clock.ticks(), earlier))

    def _on_down(self, name: str, button: Any, accept: Callable[[], None]) -> None:
        with self._lock:
            self._token += 1
            token = self._token
            self._down[name] = (self._ticks(), token)
        timer = threading.Timer(self._hold_s, self._check_held, (name, token, button, accept))
        timer.daemon = True
        timer.start()

    def _check_held(self, name: str, token: int, button: Any, accept: Callable[[], None]) -> None:
        with self._lock:
            down = self._down.get(name)
            if down is None or down[1] != token or not button.is_pressed:
                return  # released (the release edge judges it) or a newer press took over
            if self._since(down[0]) < self._hold_s - _EPS:
                return  # the pin's clock says it is not held long enough yet: the release edge judges it
            del self._down[name]
        accept()

    def _on_up(self, name: str, accept: Callable[[], None]) -> None:
        with self._lock:
            down = self._down.pop(name, None)
            if down is None:
                return  # already accepted by the hold timer
            held = self._since(down[0])
            if held < self._hold_s - _EPS:
                self.glitches += 1
                log.debug("%s released after %.3f ms: not a press", name, held * 1000)
                return
        accept()  # held long enough, released before the (late) timer looked

    def _debounced(self) -> bool:
        with self._lock:
            now = self._ticks()
            if self._last is not None and self._since(self._last) < self._debounce_s:
                return False
            self._last = now
            return True

    def _pressed(self, score: int) -> Callable[[], None]:
        def accept() -> None:
            if not self._debounced():
                return
            self.presses += 1
            self._dispatch(lambda: self._give(score))
        return accept

    def _give(self, score: int) -> None:
        self._press(score, "button")

    def _on_served(self) -> None:
        if self._served is not None and self._debounced():
            self._dispatch(self._served)

    # ------------------------------------------------------------------ LEDs and buzzer

    def show(self, view: View) -> None:
        """Follow the terminal's state with the LEDs (call on every view change)."""
        with self._lock:
            self._view = view
            key = (view.state, view.score)
            if key == self._shown or not self.leds or not self._signal_done.is_set():
                return  # unchanged, or a feedback signal is running: it restores the view when done
            self._shown = key
            self._light(view)

    def _light(self, view: View) -> None:
        if view.state == State.PROMPT:
            for led in self.leds.values():
                led.on()
        elif view.state == State.THANKS:
            for s, led in self.leds.items():
                if s == view.score:
                    led.blink(on_time=0.25, off_time=0.25)
                else:
                    led.off()
        elif view.state == State.REASONS:  # the pressed level stays lit while reasons are chosen on screen
            for s, led in self.leds.items():
                led.on() if s == view.score else led.off()
        else:
            for led in self.leds.values():
                led.off()

    def feedback(self, press: PressFeedback) -> None:
        """Answer a judged button press with its LED flashes and buzzer beeps (non-blocking)."""
        if press.input != "button":
            return  # a tap is answered on the screen (and by the speaker)
        signal = SIGNALS[press.outcome]
        if self.buzzer is not None:
            self._beep(signal)
        if signal.flashes and self.leds:
            with self._lock:
                self._signal += 1
                gen = self._signal
                self._signal_done.clear()
            self._start(self._flash, signal, gen)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        t = threading.Thread(target=target, args=args, name="hl-press-signal", daemon=True)
        self._threads.append(t)
        t.start()

    def _flash(self, signal: Signal, gen: int) -> None:
        leds = list(self.leds.values())

        def set_all(on: bool, then_wait: float) -> bool:
            with self._lock:
                if gen != self._signal:
                    return False  # a newer signal (or close) took over
                for led in leds:
                    led.on() if on else led.off()
            return not self._closing.wait(then_wait)

        if not set_all(False, 0.1):
            return
        for i in range(signal.flashes):
            if not (set_all(True, signal.flash_on)
                    and set_all(False, signal.flash_off if i < signal.flashes - 1 else 0.15)):
                return
        with self._lock:
            if gen != self._signal:
                return
            self._signal_done.set()
            if self._view is not None:  # back to what the terminal shows now
                self._shown = (self._view.state, self._view.score)
                self._light(self._view)

    def _beep(self, signal: Signal) -> None:
        from gpiozero import TonalBuzzer

        if isinstance(self.buzzer, TonalBuzzer):
            self._start(self._tones, signal)
        else:
            self.buzzer.beep(on_time=signal.beep_on, off_time=signal.beep_off or 0.05, n=signal.beeps,
                             background=True)

    def _tones(self, signal: Signal) -> None:
        from gpiozero.tones import Tone

        step = max(signal.beep_on, 0.12)
        for hz in signal.tones:
            if self._closing.is_set():
                return
            hz = min(max(hz, self.buzzer.min_tone.frequency), self.buzzer.max_tone.frequency)
            self.buzzer.play(Tone.from_frequency(hz))
            self._closing.wait(step)
        if not self._closing.is_set():
            self.buzzer.stop()

    def close(self) -> None:
        with self._lock:
            self._signal += 1  # a running signal stops at its next step
        self._closing.set()
        for t in self._threads:
            t.join(2)
        for dev in (*self.buttons.values(), *self.leds.values(),
                    *([self.served_button] if self.served_button else []),
                    *([self.buzzer] if self.buzzer is not None else [])):
            dev.close()
