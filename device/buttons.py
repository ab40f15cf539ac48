"""Physical rating buttons and LEDs on GPIO (gpiozero), for button-only units or beside the screen.

One :class:`gpiozero.Button` per score and an optional LED beside each: all
LEDs lit while a prompt waits for a press; after a press only the pressed one,
blinking on THANKS (lit steady while reasons are chosen on a screen); all dark
otherwise.

Debounce is done here, in software, with one clock for all buttons: a contact
that bounces, or a hand that brushes two buttons, gives one press per
``debounce_ms``. (gpiozero's own bounce_time depends on the pin driver and is
not implemented by its MockFactory, so doing it here behaves the same on the
Pi and in tests.) The pin factory is injected: real pins on the Pi,
``gpiozero.pins.mock.MockFactory`` in tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import GpioSettings
from .state import InputKind, State, View

log = logging.getLogger("hailong.device.buttons")

Dispatch = Callable[[Callable[[], None]], None]


class ButtonPanel:
    def __init__(self, gpio: GpioSettings, *, press: Callable[[int, InputKind], object],
                 served: Callable[[], None] | None = None, dispatch: Dispatch = lambda fn: fn(),
                 pin_factory: Any = None) -> None:
        from gpiozero import LED, Button

        self._press = press
        self._served = served
        self._dispatch = dispatch
        self._debounce_s = gpio.debounce_ms / 1000
        self._last = -1e9
        self._lock = threading.Lock()
        self.presses = 0  # accepted (debounced) presses, for diagnostics and tests
        self.buttons: dict[int, Button] = {}
        self.leds: dict[int, LED] = {}
        self.served_button: Button | None = None
        for score, pin in sorted(gpio.buttons.items()):
            b = Button(pin, pull_up=gpio.pull_up, pin_factory=pin_factory)
            b.when_pressed = self._handler(score)
            self.buttons[score] = b
        for score, pin in sorted(gpio.leds.items()):
            self.leds[score] = LED(pin, pin_factory=pin_factory)
        if gpio.served_pin is not None:
            self.served_button = Button(gpio.served_pin, pull_up=gpio.pull_up, pin_factory=pin_factory)
            self.served_button.when_pressed = self._on_served
        self._shown: tuple[State, int | None] | None = None

    def _debounced(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._debounce_s:
                return False
            self._last = now
            return True

    def _handler(self, score: int) -> Callable[[], None]:
        def pressed() -> None:
            if not self._debounced():
                return
            self.presses += 1
            self._dispatch(lambda: self._give(score))
        return pressed

    def _give(self, score: int) -> None:
        self._press(score, "button")

    def _on_served(self) -> None:
        if self._served is not None and self._debounced():
            self._dispatch(self._served)

    def show(self, view: View) -> None:
        """Follow the terminal's state with the LEDs (call on every view change)."""
        key = (view.state, view.score)
        if key == self._shown or not self.leds:
            return
        self._shown = key
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

    def close(self) -> None:
        for dev in (*self.buttons.values(), *self.leds.values(),
                    *([self.served_button] if self.served_button else [])):
            dev.close()
