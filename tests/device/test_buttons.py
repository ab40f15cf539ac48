"""GPIO buttons and LEDs with gpiozero's MockFactory (the only mock: there is no GPIO chip here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from broker.contract import QmsEvent
from device.buttons import ButtonPanel
from device.state import State, Terminal
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


def unit(factory: MockFactory, **cfg: Any) -> tuple[Terminal, ButtonPanel, MemorySink]:
    config = make_config(hardware="buttons", gpio={"buttons": PINS, "leds": LEDS, "debounce_ms": 200,
                                                   **cfg.pop("gpio", {})}, **cfg)
    sink = MemorySink()
    term = Terminal(config, sink, FakeClock())
    panel = ButtonPanel(config.gpio, press=term.press, served=term.served, pin_factory=factory)
    term.listeners.append(panel.show)
    return term, panel, sink


def close_ticket(term: Terminal, ticket: str) -> None:
    for kind in ("officer_login", "ticket_closed"):
        term.on_qms(QmsEvent(v=1, type=kind, counter="q01", officer="cb01",  # type: ignore[arg-type]
                             ticket=ticket if kind != "officer_login" else None, at=T0_WALL))


def tap(factory: MockFactory, pin: int) -> None:
    p = factory.pin(pin)
    p.drive_low()  # pull-up: pressed connects the pin to ground
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


def test_bouncing_press_gives_one_rating(factory: MockFactory) -> None:
    term, panel, sink = unit(factory)
    close_ticket(term, "A-2")
    pin = factory.pin(PINS[3])
    for _ in range(6):  # a worn contact chattering for a few ms
        pin.drive_low()
        pin.drive_high()
    tap(factory, PINS[4])  # and a brushed neighbour in the same instant
    assert panel.presses == 1
    assert [(d.ticket, d.score) for d in sink.drafts] == [("A-2", 3)]
    panel.close()


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
    panel._last = -1e9  # as if the debounce time had passed
    tap(factory, PINS[4])
    assert len(sink.drafts) == 1 and sink.drafts[0].ticket is not None and sink.drafts[0].ticket.startswith("M-")
    panel.close()
