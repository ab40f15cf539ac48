"""GPIO buttons, LEDs and buzzer with gpiozero's MockFactory (the only mock: there is no GPIO chip here).

Presses are driven on the mock pins in real time: a press is held ``HOLD_S`` (30 ms, above the
20 ms minimum), a glitch is a falling edge followed at once by the rising one (a few µs in Python).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from broker.contract import QmsEvent
from device.buttons import ButtonPanel
from device.state import Outcome, PressFeedback, State, Terminal
from tests.support.waiting import wait_until

from .fakes import T0_WALL, FakeClock, MemorySink, make_config

PINS = {4: 5, 3: 6, 2: 13, 1: 19}
LEDS = {4: 12, 3: 16, 2: 20, 1: 21}


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()
    Device.pin_factory = None


BUZZER = 18
HOLD_S = 0.030


class SteppedMockFactory(MockFactory):
    """MockFactory whose clock (gpiozero's ticks, which the panel times presses by) moves only when told:
    a 1 µs glitch is 1 µs long however late this busy machine runs the next line."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def ticks(self) -> float:
        return self.now

    @staticmethod
    def ticks_diff(later: float, earlier: float) -> float:
        return later - earlier

    def pulse(self, pin: int, held_s: float) -> None:
        p = self.pin(pin)
        p.drive_low()
        self.now += held_s
        p.drive_high()
        self.now += 0.001


@pytest.fixture
def stepped() -> Iterator[SteppedMockFactory]:
    f = SteppedMockFactory()
    yield f
    f.reset()
    Device.pin_factory = None


def unit(factory: MockFactory, **cfg: Any) -> tuple[Terminal, ButtonPanel, MemorySink]:
    config = make_config(hardware="buttons", gpio={"buttons": PINS, "leds": LEDS, "debounce_ms": 200,
                                                   **cfg.pop("gpio", {})}, **cfg)
    sink = MemorySink()
    term = Terminal(config, sink, FakeClock())
    panel = ButtonPanel(config.gpio, press=term.press, served=term.served, pin_factory=factory)
    term.listeners.append(panel.show)
    term.press_listeners.append(panel.feedback)
    return term, panel, sink


def close_ticket(term: Terminal, ticket: str) -> None:
    for kind in ("officer_login", "ticket_closed"):
        term.on_qms(QmsEvent(v=1, type=kind, counter="q01", officer="cb01",  # type: ignore[arg-type]
                             ticket=ticket if kind != "officer_login" else None, at=T0_WALL))


def tap(factory: MockFactory, pin: int, hold_s: float = HOLD_S) -> None:
    p = factory.pin(pin)
    p.drive_low()  # pull-up: pressed connects the pin to ground
    time.sleep(hold_s)
    p.drive_high()


def glitch(factory: MockFactory, pin: int) -> None:
    p = factory.pin(pin)
    p.drive_low()
    p.drive_high()


def test_pin_press_produces_a_button_rating_and_leds_follow(factory: MockFactory) -> None:
    term, panel, sink = unit(factory)
    assert all(not led.is_lit for led in panel.leds.values())
    close_ticket(term, "A-1")
    assert term.state == State.PROMPT and all(led.is_lit for led in panel.leds.values())
    tap(factory, PINS[1])
    assert term.state == State.THANKS
    assert [(d.ticket, d.score, d.input, d.reasons) for d in sink.drafts] == [("A-1", 1, "button", ())]
    assert not panel.leds[4].is_lit
    blink_pin = factory.pin(LEDS[1])
    wait_until(lambda: len(blink_pin.states) >= 4, 3, 0.05, what="LED of the pressed button blinking")
    term.clock.advance(3000)  # type: ignore[attr-defined]
    term.tick()
    assert term.state == State.IDLE
    wait_until(lambda: not panel.leds[1].is_lit, 2, what="LEDs dark on idle")
    panel.close()


def test_bouncing_press_gives_one_rating(stepped: SteppedMockFactory) -> None:
    term, panel, sink = unit(stepped)
    close_ticket(term, "A-2")
    for _ in range(6):  # a worn contact chattering, 1 ms pulses, before it closes
        stepped.pulse(PINS[3], 0.001)
    stepped.pulse(PINS[3], HOLD_S)
    stepped.pulse(PINS[4], HOLD_S)  # and a neighbour pressed right after, inside the debounce time
    assert panel.presses == 1 and panel.glitches == 6
    assert [(d.ticket, d.score) for d in sink.drafts] == [("A-2", 3)]
    panel.close()


def test_a_glitch_records_nothing_a_30ms_press_does(stepped: SteppedMockFactory) -> None:
    term, panel, sink = unit(stepped, gpio={"debounce_ms": 1})
    close_ticket(term, "A-3")
    stepped.pulse(PINS[1], 0.000001)  # 1 µs on a noisy line: it recorded "Không hài lòng" before hold_ms
    time.sleep(0.1)  # the hold timer has looked too: the button is up
    assert sink.drafts == [] and panel.presses == 0 and panel.glitches == 1 and term.state == State.PROMPT
    stepped.pulse(PINS[1], 0.019)  # a brush just under 20 ms: still nothing
    time.sleep(0.05)
    assert sink.drafts == [] and panel.glitches == 2
    stepped.pulse(PINS[4], HOLD_S)  # a 30 ms press
    assert [(d.ticket, d.score, d.input) for d in sink.drafts] == [("A-3", 4, "button")]
    assert panel.presses == 1 and panel.glitches == 2


def test_real_time_presses_on_the_plain_mock(factory: MockFactory) -> None:
    """The same on MockFactory's own clock (real time): a press held 30 ms counts, an immediate release not."""
    term, panel, sink = unit(factory, gpio={"debounce_ms": 1})
    close_ticket(term, "A-8")
    glitch(factory, PINS[2])
    tap(factory, PINS[3], 0.06)
    wait_until(lambda: sink.drafts, 2, 0.01, what="the held press recorded")
    assert [(d.score, d.input) for d in sink.drafts] == [(3, "button")] and panel.presses == 1
    panel.close()


def test_a_timer_that_looks_early_leaves_the_press_to_its_release(stepped: SteppedMockFactory) -> None:
    term, panel, sink = unit(stepped, gpio={"hold_ms": 50})
    close_ticket(term, "A-4")
    stepped.pin(PINS[2]).drive_low()
    time.sleep(0.1)  # the hold timer has looked, but the pin's clock says 0 ms held: not yet
    assert sink.drafts == []
    stepped.now += 0.05
    # the timer does not look again: the release edge decides, 50 ms after the press on the pin's clock
    assert stepped.pin(PINS[2]).state is False
    stepped.pin(PINS[2]).drive_high()
    assert [(d.score, d.input) for d in sink.drafts] == [(2, "button")] and panel.presses == 1
    panel.close()


def test_the_hold_timer_takes_a_press_still_held(factory: MockFactory) -> None:
    """On the real clock: the press is taken while the button is still down (no release needed)."""
    term, panel, sink = unit(factory, gpio={"hold_ms": 50})
    close_ticket(term, "A-9")
    factory.pin(PINS[2]).drive_low()
    wait_until(lambda: sink.drafts, 2, 0.01, what="the press taken while the button is still down")
    assert factory.pin(PINS[2]).state is False  # not released yet: the hold timer saw it still held
    factory.pin(PINS[2]).drive_high()
    time.sleep(0.1)
    assert [(d.score, d.input) for d in sink.drafts] == [(2, "button")] and panel.presses == 1
    panel.close()


def test_hold_time_is_configurable_and_checked() -> None:
    with pytest.raises(ValueError, match="hold_ms"):
        make_config(gpio={"hold_ms": 0})
    with pytest.raises(ValueError, match=r"BCM pins used twice: \[18\]"):
        make_config(gpio={"leds": {1: 18}, "buzzer_pin": 18})


def test_press_without_ticket_and_after_rating_gives_nothing(factory: MockFactory) -> None:
    term, panel, sink = unit(factory, gpio={"debounce_ms": 1})
    term.on_qms(QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=T0_WALL))
    tap(factory, PINS[4])
    assert sink.drafts == [] and term.stats.ignored["no_ticket"] == 1
    panel.close()


def test_served_button_opens_the_prompt_in_manual_mode(factory: MockFactory) -> None:
    term, panel, sink = unit(factory, mode="manual_served", officer_id="cb01", gpio={"served_pin": 26})
    assert term.state == State.IDLE
    tap(factory, 26)
    assert term.state == State.PROMPT
    factory.pin(PINS[4]).drive_low()
    factory.pin(PINS[4]).drive_high()
    assert term.state == State.PROMPT and sink.drafts == []  # debounce: 'served' and the press came 0 ms apart
    panel._last = None  # as if the debounce time had passed
    tap(factory, PINS[4])
    assert len(sink.drafts) == 1 and sink.drafts[0].ticket is not None and sink.drafts[0].ticket.startswith("M-")
    panel.close()


def rises(states: list[Any], since: int) -> int:
    """Off -> on changes of a mock pin after index ``since`` of its recorded states."""
    values = [bool(s.state) for s in states]
    return sum(1 for i in range(max(since, 1), len(values)) if values[i] and not values[i - 1])


class ToneRecordingPin(MockPWMPin):
    """MockFactory's PWM pin, remembering every frequency a TonalBuzzer sets (the tones played)."""

    def __init__(self, factory: MockFactory, info: Any) -> None:
        super().__init__(factory, info)
        self.tones: list[float] = []

    def _set_frequency(self, value: float | None) -> None:
        super()._set_frequency(value)
        if value is not None:
            self.tones.append(round(value))


def settle(panel: ButtonPanel) -> None:
    wait_until(panel._signal_done.is_set, 4, 0.02, what="the LED signal finished")
    time.sleep(0.9)  # the longest buzzer pattern (not now: 0.8 s) is over


def test_every_press_outcome_lights_and_sounds(factory: MockFactory) -> None:
    """Accepted, too early, already rated and not now: each a distinct LED and buzzer pattern."""
    term, panel, sink = unit(factory, gpio={"debounce_ms": 50, "buzzer_pin": BUZZER})
    heard: list[PressFeedback] = []
    term.press_listeners.append(heard.append)
    leds = [factory.pin(p) for p in LEDS.values()]
    buzzer = factory.pin(BUZZER)

    def press(pin: int) -> tuple[list[int], int]:
        marks = [len(p.states) for p in leds]
        beep_mark = len(buzzer.states)
        term.clock.advance(1000)  # type: ignore[attr-defined]  # the terminal's debounce runs on its clock
        tap(factory, pin)
        wait_until(lambda: len(heard) > n, 2, 0.01, what="the press judged")
        settle(panel)
        return [rises(p.states, m) for p, m in zip(leds, marks, strict=True)], rises(buzzer.states, beep_mark)

    # too early: the officer is serving but has not closed the ticket
    term.on_qms(QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=T0_WALL))
    n = 0
    flashes, beeps = press(PINS[3])
    assert heard[-1].outcome == Outcome.TOO_EARLY and sink.drafts == []
    assert flashes == [2, 2, 2, 2] and beeps == 2
    # accepted: the ticket is closed, the press is held 30 ms
    close_ticket(term, "A-5")
    n = 1
    marks = [len(p.states) for p in leds]
    flashes, beeps = press(PINS[4])
    assert heard[-1].outcome == Outcome.ACCEPTED and [d.score for d in sink.drafts] == [4]
    assert beeps == 1 and flashes[1:] == [0, 0, 0] and rises(leds[0].states, marks[0]) >= 1  # only "4" blinks
    assert term.state == State.THANKS
    # already rated: a second press while "Cảm ơn" shows, and again after it
    n = 2
    flashes, beeps = press(PINS[4])
    assert heard[-1].outcome == Outcome.ALREADY_RATED and heard[-1].why == "in_thanks"
    # (the rated level's LED goes on blinking for THANKS around the three flashes)
    assert flashes[1:] == [3, 3, 3] and flashes[0] >= 3 and beeps == 3
    term.clock.advance(3000)  # type: ignore[attr-defined]
    term.tick()
    assert term.state == State.IDLE
    n = 3
    flashes, beeps = press(PINS[1])
    assert heard[-1].outcome == Outcome.ALREADY_RATED and heard[-1].why == "no_ticket"
    assert flashes == [3, 3, 3, 3] and beeps == 3
    # not now: out of service (the officer logged out)
    term.on_qms(QmsEvent(v=1, type="officer_logout", counter="q01", officer="cb01", at=T0_WALL))
    n = 4
    flashes, beeps = press(PINS[2])
    assert heard[-1].outcome == Outcome.NOT_NOW and flashes == [1, 1, 1, 1] and beeps == 1
    assert len(sink.drafts) == 1
    # after each signal the LEDs show the terminal's state again: out of service = all dark
    assert not any(led.is_lit for led in panel.leds.values())
    panel.close()


def test_leds_come_back_to_the_prompt_after_a_signal(factory: MockFactory) -> None:
    term, panel, _sink = unit(factory, gpio={"debounce_ms": 50})
    term.on_qms(QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=T0_WALL))
    tap(factory, PINS[2])  # too early
    close_ticket(term, "A-6")  # the ticket closes while the "too early" flashes run
    settle(panel)
    assert term.state == State.PROMPT and all(led.is_lit for led in panel.leds.values())
    panel.close()


def test_tonal_buzzer_plays_a_distinct_tune_per_outcome() -> None:
    factory = MockFactory(pin_class=ToneRecordingPin)
    try:
        term, panel, sink = unit(factory, gpio={"debounce_ms": 50, "buzzer_pin": BUZZER, "buzzer_tonal": True})
        pin = factory.pin(BUZZER)
        assert isinstance(pin, ToneRecordingPin)
        pin.tones.clear()  # gpiozero's own set-up frequency
        term.on_qms(QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=T0_WALL))
        tap(factory, PINS[1])
        wait_until(lambda: len(pin.tones) >= 2, 3, 0.02, what="the too-early tune")
        too_early = list(pin.tones)
        close_ticket(term, "A-7")
        term.clock.advance(1000)  # type: ignore[attr-defined]
        settle(panel)
        pin.tones.clear()
        tap(factory, PINS[3])
        wait_until(lambda: len(pin.tones) >= 2, 3, 0.02, what="the accepted tune")
        settle(panel)
        accepted = list(pin.tones)
        pin.tones.clear()
        term.clock.advance(1000)  # type: ignore[attr-defined]
        tap(factory, PINS[3])
        wait_until(lambda: len(pin.tones) >= 2, 3, 0.02, what="the already-rated tune")
        already = list(pin.tones)
        assert (too_early, accepted, already) == ([880, 880], [1047, 1568], [1319, 1047])
        assert [d.score for d in sink.drafts] == [3]
        panel.close()
    finally:
        factory.reset()
        Device.pin_factory = None


def test_the_wiring_diagram_is_drawn_from_the_example_unit(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "wiring.png"
    proc = subprocess.run([sys.executable, str(root / "scripts" / "button_unit_wiring.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 30_000
    assert (root / "docs" / "screens" / "button_unit_wiring.png").is_file()  # the one docs/device.md shows
