"""The QR to rate later: the state machine's LATER screen, the link the terminal signs, its settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broker import weblink
from broker.contract import QmsEvent
from broker.kernel.settings import ConfigError
from device.config import load_device_config
from device.later import RatingLinkSigner
from device.state import Outcome, State, Terminal

from .fakes import T0_WALL, FakeClock, MemorySink, make_config

CENTRE_KEY = bytes(range(32))
KEY_TEXT = f"3:{weblink.terminal_key(CENTRE_KEY, 'q01').hex()}"
WEB = {"enabled": True, "base_url": "https://danhgia.example.gov.vn", "key": KEY_TEXT, "show_s": 20}


def qms(kind: str, ticket: str | None = None, at: int = T0_WALL, ticket_id: str | None = None) -> QmsEvent:
    return QmsEvent(v=1, type=kind, counter="q01", officer="cb01", ticket=ticket,  # type: ignore[arg-type]
                    service="ho-tich" if ticket else None, at=at, ticket_id=ticket_id)


def terminal(**config: object) -> tuple[Terminal, FakeClock, MemorySink]:
    cfg = make_config(web_link=WEB, **config)
    clock, sink = FakeClock(), MemorySink()
    term = Terminal(cfg, sink, clock)
    term.later_links = RatingLinkSigner(cfg)
    term.on_qms(qms("officer_login"))
    return term, clock, sink


def timed_out(term: Terminal, clock: FakeClock, ticket: str = "A-101", ticket_id: str | None = None) -> None:
    term.on_qms(qms("ticket_closed", ticket, at=clock.wall, ticket_id=ticket_id))
    assert term.state == State.PROMPT
    clock.advance(30_000)  # prompt_timeout_s
    term.tick()


def test_an_unrated_prompt_shows_the_tickets_link_signed_with_this_counters_key() -> None:
    term, clock, sink = terminal()
    timed_out(term, clock, "A-101", ticket_id="20251122-A-101")
    view = term.view
    assert view.state == State.LATER and view.later_ticket == "A-101" and view.later_days == 7
    assert view.later_url is not None and view.later_url.startswith("https://danhgia.example.gov.vn/r/")
    link = weblink.verify(view.later_url.rsplit("/", 1)[1], {3: CENTRE_KEY}, now_s=T0_WALL // 1000)
    # T0_WALL is 2025-11-22 15:26 in Ho Chi Minh City: that service day, valid to its end + 7 days
    assert (link.centre, link.counter, link.ticket, link.ticket_id, link.source, link.day) == (
        "c-test", "q01", "A-101", "20251122-A-101", "terminal-qr", dt.date(2025, 11, 22))
    assert link.expires == int(dt.datetime(2025, 11, 29, 17, tzinfo=dt.UTC).timestamp())
    assert sink.drafts == [] and term.stats.not_rated == 1
    # a press on the QR screen rates nothing: that ticket is the phone's now
    feedback: list[Outcome] = []
    term.press_listeners.append(lambda f: feedback.append(f.outcome))
    clock.advance(1000)
    term.press(4)
    assert term.state == State.LATER and sink.drafts == [] and feedback == [Outcome.NOT_NOW]
    # show_s later: idle
    clock.advance(19_000)
    term.tick()
    assert term.state == State.IDLE and term.view.later_url is None


def test_the_next_call_or_close_ends_the_qr_screen_at_once() -> None:
    term, clock, _ = terminal()
    timed_out(term, clock, "A-101")
    term.on_qms(qms("ticket_called", "A-102", at=clock.wall))
    assert term.state == State.IDLE and term.view.serving_ticket == "A-102"
    timed_out(term, clock, "A-102")
    assert term.state == State.LATER
    term.on_qms(qms("ticket_closed", "A-103", at=clock.wall))
    assert term.state == State.PROMPT and term.view.prompt_ticket == "A-103" and term.view.later_url is None


def test_no_qr_without_web_link_nor_when_the_prompt_ends_otherwise() -> None:
    cfg = make_config()
    clock, sink = FakeClock(), MemorySink()
    plain = Terminal(cfg, sink, clock)
    plain.on_qms(qms("officer_login"))
    timed_out(plain, clock)
    assert plain.state == State.IDLE  # not configured: nothing shown
    term, clock, _ = terminal()
    term.on_qms(qms("ticket_closed", "B-1", at=clock.wall))
    term.on_qms(qms("officer_logout"))  # the officer left: the prompt ends without a QR
    assert term.state == State.OUT_OF_SERVICE
    term, clock, _ = terminal()
    term.on_qms(qms("ticket_closed", "B-2", at=clock.wall))
    clock.advance(2000)
    term.press(4)
    clock.advance(5000)
    term.tick()
    assert term.state == State.IDLE  # rated: thanks, then idle, never the QR


def test_a_link_that_cannot_be_made_leaves_the_terminal_rating() -> None:
    term, clock, _ = terminal()

    def broken(_b: object) -> str:
        raise ValueError("no key")
    term.later_links = broken
    timed_out(term, clock)
    assert term.state == State.IDLE
    term.on_qms(qms("ticket_closed", "C-1", at=clock.wall))
    assert term.state == State.PROMPT


def test_web_link_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_url"):
        make_config(web_link={"enabled": True, "key": KEY_TEXT})
    with pytest.raises(ValueError, match="key_file"):
        make_config(web_link={"enabled": True, "base_url": "https://x.vn"})
    with pytest.raises(ValueError, match="base_url"):
        make_config(web_link={**WEB, "base_url": "https://x.vn/r/"})
    with pytest.raises(ValueError, match="no screen"):
        make_config(web_link=WEB, hardware="buttons", gpio={"buttons": {1: 5, 2: 6, 3: 13, 4: 19}})
    with pytest.raises(ValueError, match="qms mode only"):
        make_config(web_link=WEB, mode="manual_served", officer_id="cb01")
    with pytest.raises(ValueError, match=r"extra|not permitted"):
        make_config(web_link={**WEB, "colour": "red"})
    with pytest.raises(ValueError, match="time zone"):
        make_config(web_link={**WEB, "timezone": "Mars/Olympus"})
    # a malformed key file: the error names the file and key, never the secret
    key = tmp_path / "weblink.key"
    key.write_text("3:abcd\n", encoding="utf-8")
    cfg_path = tmp_path / "device.toml"
    cfg_path.write_text('device_id = "t1"\ncentre = "c1"\ncounter = "q01"\ncentre_name = "C"\n'
                        'counter_label = "Quầy 1"\n[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[web_link]\nenabled = true\n'
                        'base_url = "https://x.vn"\nkey_file = "weblink.key"\n', encoding="utf-8")
    cfg = load_device_config(cfg_path)
    assert cfg.web_link.key_file == key  # relative to the config file
    with pytest.raises(ConfigError) as err:
        RatingLinkSigner(cfg, cfg_path)
    assert err.value.key == "web_link.key_file" and str(cfg_path) in str(err.value) and "abcd" not in str(err.value)
    key.unlink()
    with pytest.raises(ConfigError, match=r"web_link\.key_file"):
        load_device_config(cfg_path)
