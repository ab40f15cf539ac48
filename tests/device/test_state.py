"""Table-driven tests of the terminal state machine: every transition and timeout, window and one-per-ticket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.contract import QmsEvent
from device.state import State, Terminal

from .fakes import T0_WALL, FakeClock, MemorySink, make_config


def qms(kind: str, ticket: str | None = None, officer: str = "cb01", counter: str = "q01",
        at: int | None = None) -> QmsEvent:
    return QmsEvent(v=1, type=kind, counter=counter, officer=officer, ticket=ticket,  # type: ignore[arg-type]
                    service="ho-tich" if ticket else None, at=at if at is not None else T0_WALL)


@dataclass
class Rig:
    term: Terminal
    clock: FakeClock
    sink: MemorySink

    def run(self, steps: list[tuple[Any, ...]]) -> None:
        for step in steps:
            op, *args = step
            if op == "login":
                self.term.on_qms(qms("officer_login", officer=args[0] if args else "cb01"))
            elif op == "logout":
                self.term.on_qms(qms("officer_logout"))
            elif op == "call":
                self.term.on_qms(qms("ticket_called", args[0]))
            elif op == "close":
                self.term.on_qms(qms("ticket_closed", args[0], at=self.clock.wall + (args[1] if len(args) > 1 else 0)))
            elif op == "close_other_counter":
                self.term.on_qms(qms("ticket_closed", args[0], counter="q02"))
            elif op == "press":
                self.term.press(args[0], args[1] if len(args) > 1 else "touch")
            elif op == "reason":
                self.term.toggle_reason(args[0])
            elif op == "submit":
                self.term.submit_reasons()
            elif op == "skip":
                self.term.skip_reasons()
            elif op == "rechoose":
                self.term.rechoose()
            elif op == "served":
                self.term.served()
            elif op == "wait":  # advance the clock, then let timeouts fire
                self.clock.advance(int(args[0] * 1000))
                self.term.tick()
            elif op == "advance":  # advance without a tick (a press racing the timer)
                self.clock.advance(int(args[0] * 1000))
            elif op == "lang":
                self.term.set_language(args[0])
            elif op == "full":
                self.sink.full = args[0]
            elif op == "broken":
                self.sink.broken = True
            else:
                raise AssertionError(f"unknown step {op}")


def rig(config: dict[str, Any] | None = None, *, no_config: bool = False) -> Rig:
    clock, sink = FakeClock(), MemorySink()
    cfg = None if no_config else make_config(**(config or {}))
    return Rig(Terminal(cfg, sink, clock, config_error="file not found"), clock, sink)


@dataclass
class Case:
    name: str
    steps: list[tuple[Any, ...]]
    state: State
    ratings: list[dict[str, Any]] = field(default_factory=list)  # expected fields of each committed rating
    config: dict[str, Any] = field(default_factory=dict)
    not_rated: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    view: dict[str, Any] = field(default_factory=dict)


SERVED = [("login",), ("call", "A-1024"), ("close", "A-1024")]

CASES = [
    Case("starts out of service without officer", [], State.OUT_OF_SERVICE, view={"oos_reason": "no_officer"}),
    Case("login -> idle", [("login",)], State.IDLE, view={"officer_name": "Nguyễn Thị Lan"}),
    Case("called ticket shown on idle", [("login",), ("call", "A-1024")], State.IDLE,
         view={"serving_ticket": "A-1024"}),
    Case("close -> prompt", SERVED, State.PROMPT, view={"prompt_ticket": "A-1024", "serving_ticket": None}),
    Case("top score -> thanks, bound to ticket", [*SERVED, ("press", 4)], State.THANKS,
         [{"ticket": "A-1024", "score": 4, "officer": "cb01", "service": "ho-tich", "closed_at": T0_WALL,
           "reasons": (), "input": "touch"}], view={"score": 4}),
    Case("thanks times out -> idle", [*SERVED, ("press", 3), ("wait", 2.9)], State.THANKS, [{"score": 3}]),
    Case("thanks 3 s -> idle", [*SERVED, ("press", 3), ("wait", 3)], State.IDLE, [{"score": 3}]),
    Case("low score -> reasons", [*SERVED, ("press", 1)], State.REASONS, view={"score": 1}),
    Case("Bình thường (2 of 4) also asks reasons", [*SERVED, ("press", 2)], State.REASONS),
    Case("reasons submit", [*SERVED, ("press", 1), ("reason", "thai_do"), ("reason", "thu_tuc"), ("submit",)],
         State.THANKS, [{"score": 1, "reasons": ("thai_do", "thu_tuc")}]),
    Case("reason toggled twice is removed", [*SERVED, ("press", 1), ("reason", "thai_do"), ("reason", "thu_tuc"),
                                             ("reason", "thai_do"), ("submit",)],
         State.THANKS, [{"reasons": ("thu_tuc",)}]),
    Case("unknown reason code ignored", [*SERVED, ("press", 1), ("reason", "bogus"), ("submit",)],
         State.THANKS, [{"reasons": ()}]),
    Case("reasons skip sends none", [*SERVED, ("press", 1), ("reason", "thai_do"), ("skip",)], State.THANKS,
         [{"score": 1, "reasons": ()}]),
    Case("reasons timeout 15 s sends chosen", [*SERVED, ("press", 2), ("reason", "huong_dan"), ("wait", 14.9)],
         State.REASONS),
    Case("reasons timeout fires", [*SERVED, ("press", 2), ("reason", "huong_dan"), ("wait", 15)], State.THANKS,
         [{"score": 2, "reasons": ("huong_dan",)}]),
    # "Chọn lại": a wrong low tap is taken back before anything is stored (the delivery guarantee holds)
    Case("Chọn lại: back to the faces, nothing stored", [*SERVED, ("press", 1), ("reason", "thai_do"), ("rechoose",)],
         State.PROMPT, view={"prompt_ticket": "A-1024", "reasons_chosen": (), "score": None}),
    Case("Chọn lại then top score: one rating, the corrected one",
         [*SERVED, ("press", 1), ("reason", "thai_do"), ("rechoose",), ("advance", 0.5), ("press", 4)],
         State.THANKS, [{"ticket": "A-1024", "score": 4, "reasons": ()}]),
    Case("Chọn lại then low again asks reasons afresh",
         [*SERVED, ("press", 1), ("reason", "thai_do"), ("rechoose",), ("advance", 0.5), ("press", 2), ("skip",)],
         State.THANKS, [{"score": 2, "reasons": ()}]),
    Case("Chọn lại prompt still open until the window ends",
         [*SERVED, ("wait", 25), ("press", 1), ("wait", 14), ("rechoose",), ("wait", 20.9)], State.PROMPT),
    Case("Chọn lại prompt closes at the window's end, not rated",
         [*SERVED, ("wait", 25), ("press", 1), ("wait", 14), ("rechoose",), ("wait", 21)], State.IDLE, not_rated=1),
    Case("Chọn lại after the window is refused, reasons go on",
         [*SERVED, ("wait", 10), ("press", 1), ("advance", 10), ("rechoose",), ("submit",)], State.THANKS,
         [{"score": 1}], config={"rating_window_s": 20}, ignored={"rechoose_outside_window": 1}),
    Case("Chọn lại only on the reasons screen", [*SERVED, ("rechoose",)], State.PROMPT,
         ignored={"rechoose_not_applicable": 1}),
    Case("ticket waiting behind a Chọn lại prompt that times out is prompted",
         [*SERVED, ("press", 1), ("close", "A-1025"), ("rechoose",), ("wait", 30)], State.PROMPT,
         not_rated=1, view={"prompt_ticket": "A-1025"}),
    Case("new close after Chọn lại supersedes the prompt and the waiting ticket",
         [*SERVED, ("press", 1), ("close", "A-1025"), ("rechoose",), ("close", "A-1026"), ("advance", 0.5),
          ("press", 4), ("wait", 3)], State.IDLE, [{"ticket": "A-1026", "score": 4}], not_rated=2),
    Case("always_on: Chọn lại back to the resting prompt",
         [("press", 1), ("rechoose",), ("advance", 0.5), ("press", 3)], State.THANKS,
         [{"ticket": None, "score": 3}], config={"mode": "always_on", "officer_id": "cb01"}),
    Case("prompt 30 s timeout -> idle, not rated", [*SERVED, ("wait", 30)], State.IDLE, not_rated=1),
    Case("prompt still open at 29.9 s", [*SERVED, ("wait", 29.9), ("press", 4)], State.THANKS, [{"score": 4}]),
    Case("window shorter than prompt timeout bounds the prompt", [*SERVED, ("wait", 20)], State.IDLE,
         config={"rating_window_s": 20}, not_rated=1),
    Case("press after window without tick is refused", [*SERVED, ("advance", 21), ("press", 4)], State.IDLE,
         config={"rating_window_s": 20}, not_rated=1, ignored={"outside_window": 1}),
    Case("press in idle without ticket refused", [("login",), ("press", 4)], State.IDLE,
         ignored={"no_ticket": 1}),
    Case("press after prompt timed out refused", [*SERVED, ("wait", 30), ("press", 4)], State.IDLE,
         not_rated=1, ignored={"no_ticket": 1}),
    Case("one rating per ticket: repeated close ignored", [*SERVED, ("press", 4), ("wait", 3),
                                                           ("close", "A-1024"), ("press", 4)],
         State.IDLE, [{"ticket": "A-1024"}], ignored={"repeated_close": 1, "no_ticket": 1}),
    Case("presses during thanks collapse", [*SERVED, ("press", 4), ("wait", 0.5), ("press", 4), ("press", 3)],
         State.THANKS, [{"score": 4}], ignored={"in_thanks": 1, "bounce": 1}),
    Case("bouncing contact collapses to one press", [*SERVED, ("press", 1), ("advance", 0.02), ("press", 1)],
         State.REASONS, ignored={"bounce": 1}),
    Case("score above scale ignored", [*SERVED, ("press", 5)], State.PROMPT, ignored={"bad_score": 1}),
    Case("stale close (queued while offline) ignored", [("login",), ("close", "A-7", -61_000)], State.IDLE,
         ignored={"stale_close": 1}),
    Case("other counter's close ignored", [("login",), ("close_other_counter", "B-1")], State.IDLE),
    Case("close implies officer even if login missed", [("close", "A-9")], State.PROMPT,
         view={"officer_name": "Nguyễn Thị Lan"}),
    Case("new close during prompt: old not rated", [*SERVED, ("close", "A-1025"), ("press", 4)], State.THANKS,
         [{"ticket": "A-1025"}], not_rated=1),
    Case("close during thanks prompts after thanks", [*SERVED, ("press", 4), ("close", "A-1025"), ("wait", 3)],
         State.PROMPT, [{"ticket": "A-1024"}], view={"prompt_ticket": "A-1025"}),
    Case("close during reasons waits for the citizen", [*SERVED, ("press", 1), ("close", "A-1025"), ("submit",),
                                                        ("wait", 3), ("press", 3)],
         State.THANKS, [{"ticket": "A-1024", "score": 1}, {"ticket": "A-1025", "score": 3}]),
    Case("logout -> out of service", [("login",), ("logout",)], State.OUT_OF_SERVICE,
         view={"oos_reason": "no_officer"}),
    Case("logout during prompt: not rated", [*SERVED, ("logout",)], State.OUT_OF_SERVICE, not_rated=1),
    Case("logout during thanks: out of service after", [*SERVED, ("press", 4), ("logout",), ("wait", 3)],
         State.OUT_OF_SERVICE, [{"score": 4}]),
    Case("walk-up when allowed", [("login",), ("press", 3)], State.THANKS,
         [{"ticket": None, "closed_at": None, "score": 3}], config={"walkup_allowed": True}),
    Case("walk-up repeat inside window collapses", [("login",), ("press", 3), ("wait", 3), ("press", 3)],
         State.IDLE, [{"ticket": None}], config={"walkup_allowed": True}, ignored={"collapsed": 1}),
    Case("walk-up after window accepted", [("login",), ("press", 3), ("wait", 3), ("wait", 60), ("press", 4)],
         State.THANKS, [{"score": 3}, {"score": 4}], config={"walkup_allowed": True}),
    Case("buttons-only unit skips reasons", [*SERVED, ("press", 1, "button")], State.THANKS,
         [{"score": 1, "reasons": (), "input": "button"}],
         config={"hardware": "buttons", "gpio": {"buttons": {1: 5, 2: 6, 3: 13, 4: 19}}}),
    Case("button press on touch+buttons unit skips reasons", [*SERVED, ("press", 2, "button")], State.THANKS,
         [{"input": "button", "reasons": ()}]),
    Case("scale 3: only lowest asks reasons", [*SERVED, ("press", 2)], State.THANKS, [{"scale": 3, "score": 2}],
         config={"scale": 3}),
    Case("scale 5: 3 asks reasons", [*SERVED, ("press", 3)], State.REASONS, config={"scale": 5}),
    Case("manual_served: press before served refused", [("press", 4)], State.IDLE,
         config={"mode": "manual_served", "officer_id": "cb01"}, ignored={"no_ticket": 1}),
    Case("manual_served: served -> prompt -> rating", [("served",), ("press", 4)], State.THANKS,
         [{"ticket": f"M-{T0_WALL}", "closed_at": T0_WALL, "officer": "cb01"}],
         config={"mode": "manual_served", "officer_id": "cb01"}),
    Case("manual_served: prompt times out", [("served",), ("wait", 30)], State.IDLE,
         config={"mode": "manual_served", "officer_id": "cb01"}, not_rated=1),
    Case("served ignored in qms mode", [("login",), ("served",)], State.IDLE,
         ignored={"served_not_applicable": 1}),
    Case("always_on: prompt at rest", [], State.PROMPT, config={"mode": "always_on", "officer_id": "cb01"}),
    Case("always_on: rating is a walk-up, back to prompt", [("press", 4), ("wait", 3)], State.PROMPT,
         [{"ticket": None, "score": 4}], config={"mode": "always_on", "officer_id": "cb01"}),
    Case("always_on: rate limited", [("press", 4), ("wait", 3), ("press", 4), ("wait", 7), ("press", 3)],
         State.THANKS, [{"score": 4}, {"score": 3}], config={"mode": "always_on", "officer_id": "cb01"},
         ignored={"rate_limited": 1}),
    Case("always_on: no timeout", [("wait", 300)], State.PROMPT, config={"mode": "always_on", "officer_id": "cb01"}),
    Case("outbox full -> out of service, no thanks", [*SERVED, ("full", True), ("press", 4)], State.OUT_OF_SERVICE,
         view={"oos_reason": "outbox_full"}),
    Case("outbox room again -> idle", [*SERVED, ("full", True), ("press", 4), ("full", False), ("wait", 1)],
         State.IDLE),
    Case("storage error -> out of service", [*SERVED, ("broken",), ("press", 4)], State.OUT_OF_SERVICE,
         view={"oos_reason": "storage_error"}),
    Case("language toggle shown", [*SERVED, ("lang", "en")], State.PROMPT, view={"language": "en"}),
    Case("language back to default after thanks", [*SERVED, ("lang", "en"), ("press", 4), ("wait", 3)], State.IDLE,
         [{"score": 4}], view={"language": "vi"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transition(case: Case) -> None:
    r = rig(case.config)
    seen: list[State] = []
    r.term.listeners.append(lambda v: seen.append(v.state))
    r.run(case.steps)
    assert r.term.state == case.state
    assert len(r.sink.drafts) == len(case.ratings), r.sink.drafts
    for draft, expected in zip(r.sink.drafts, case.ratings, strict=True):
        for key, value in expected.items():
            assert getattr(draft, key) == value, (key, draft)
    assert r.term.stats.not_rated == case.not_rated
    for why, n in case.ignored.items():
        assert r.term.stats.ignored[why] == n, r.term.stats.ignored
    for key, value in case.view.items():
        assert getattr(r.term.view, key) == value, (key, r.term.view)
    if case.steps:
        assert not seen or seen[-1] == case.state  # listeners saw the final state


def test_no_config_is_out_of_service_with_the_problem() -> None:
    r = rig(no_config=True)
    assert r.term.state == State.OUT_OF_SERVICE
    assert r.term.view.oos_reason == "no_config" and r.term.view.oos_detail == "file not found"
    r.run([("login",), ("press", 4)])
    assert r.term.state == State.OUT_OF_SERVICE and not r.sink.drafts


def test_config_arriving_later_brings_the_terminal_up() -> None:
    r = rig(no_config=True)
    r.term.apply_config(make_config(officer_id="cb01"))
    assert r.term.state == State.IDLE


def test_live_config_update_changes_scale_and_window() -> None:
    r = rig()
    r.run([("login",)])
    r.term.apply_config(make_config(scale=5, rating_window_s=10))
    assert r.term.view.scale == 5
    r.run([("close", "A-1"), ("wait", 10)])
    assert r.term.state == State.IDLE and r.term.stats.not_rated == 1
    r.run([("close", "A-2"), ("press", 5)])
    assert r.sink.drafts[-1].scale == 5 and r.sink.drafts[-1].score == 5


def test_rated_at_and_mono_come_from_the_clock() -> None:
    r = rig()
    r.run([*SERVED, ("advance", 2.5), ("press", 4)])
    d = r.sink.drafts[0]
    assert d.rated_at == T0_WALL + 2500 and d.mono_ms == r.clock.mono


def vendor_close(r: Rig, ticket: str, ticket_id: str | None, officer: str = "cb01") -> None:
    r.term.on_qms(QmsEvent(v=1, type="ticket_closed", counter="q01", officer=officer, ticket=ticket,
                           ticket_id=ticket_id, service="ho-tich", at=r.clock.wall))


def test_the_qms_ticket_id_travels_from_the_close_to_the_prompt_and_the_rating() -> None:
    r = rig()
    r.run([("login",)])
    vendor_close(r, "A001", "884213", officer="cb02")
    assert (r.term.view.prompt_ticket, r.term.view.prompt_ticket_id, r.term.view.prompt_officer) == \
        ("A001", "884213", "cb02")
    r.run([("press", 4)])
    assert [(d.ticket, d.ticket_id, d.officer) for d in r.sink.drafts] == [("A001", "884213", "cb02")]


def test_a_recall_of_a_vendor_ticket_does_not_prompt_again_but_tomorrows_number_does() -> None:
    r = rig()
    r.run([("login",)])
    vendor_close(r, "A003", "17")
    r.run([("press", 4), ("wait", 3)])
    vendor_close(r, "A003", "17")  # recalled and closed again 3 s later: the citizen already rated
    assert r.term.state == State.IDLE and r.term.stats.ignored["repeated_close"] == 1
    r.run([("wait", 3600)])
    vendor_close(r, "A003", "17")  # even an hour later: one vendor id is one ticket
    assert r.term.stats.ignored["repeated_close"] == 2
    vendor_close(r, "A003", "18")  # the same number under another vendor id is another ticket
    assert r.term.view.prompt_ticket_id == "18"


@pytest.mark.parametrize("ticket_id", [None, "day-2"])
def test_daily_reset_numbers_prompt_again_the_next_morning(ticket_id: str | None) -> None:
    r = rig()
    r.run([("login",)])
    vendor_close(r, "A001", None if ticket_id is None else "day-1")
    r.run([("press", 4), ("wait", 3), ("wait", 600)])
    vendor_close(r, "A001", None if ticket_id is None else "day-1")  # a QoS 1 redelivery 10 min later
    assert r.term.state == State.IDLE and r.term.stats.ignored["repeated_close"] == 1
    r.run([("wait", 15 * 3600)])  # 07:30 the next morning: numbering restarted at A001
    vendor_close(r, "A001", ticket_id)
    assert r.term.state == State.PROMPT and r.term.view.prompt_ticket == "A001"
    r.run([("press", 3)])
    assert [d.ticket_id for d in r.sink.drafts] == [None if ticket_id is None else "day-1", ticket_id]


def test_yesterdays_call_and_close_arriving_late_do_not_name_the_officer_at_the_counter() -> None:
    r = rig()
    day_ago = r.clock.wall - 86_400_000
    r.term.on_qms(qms("ticket_called", "A001", officer="cb09", at=day_ago))
    r.term.on_qms(qms("ticket_closed", "A001", officer="cb09", at=day_ago))
    assert r.term.officer is None and r.term.state == State.OUT_OF_SERVICE and r.term.view.serving_ticket is None
    assert (r.term.stats.ignored["stale_call"], r.term.stats.ignored["stale_close"]) == (1, 1)
    r.run([("login", "cb01"), ("close", "A001")])  # today's A001, by today's officer
    assert r.term.state == State.PROMPT and r.term.view.prompt_officer == "cb01"


def test_the_screens_name_the_officer_of_the_close_through_prompt_reasons_and_thanks() -> None:
    r = rig({"officer_names": {"cb01": "Nguyễn Thị Lan", "cb02": "Nguyễn Văn An"}})
    r.run([("login", "cb01")])
    assert r.term.view.officer_name == "Nguyễn Thị Lan" and r.term.view.rated_officer_name is None
    # the QMS says cb02 served this ticket (the terminal missed the hand-over): the citizen rates cb02
    r.term.on_qms(qms("ticket_closed", "A-7", officer="cb02", at=r.clock.wall))
    assert r.term.state == State.PROMPT and r.term.view.rated_officer_name == "Nguyễn Văn An"
    r.run([("press", 1)])
    assert r.term.state == State.REASONS and r.term.view.rated_officer_name == "Nguyễn Văn An"
    r.run([("skip",)])
    assert r.term.state == State.THANKS and r.term.view.rated_officer_name == "Nguyễn Văn An"
    assert r.sink.drafts[-1].officer == "cb02"
    r.run([("wait", 4)])
    assert r.term.state == State.IDLE and r.term.view.rated_officer_name is None


@pytest.mark.parametrize(("steps", "reason", "code"), [
    ([], "no_officer", "L1"),
    ([*SERVED, ("full", True), ("press", 4)], "outbox_full", "S1"),
    ([*SERVED, ("broken",), ("press", 4)], "storage_error", "S2"),
])
def test_out_of_service_carries_a_short_code_for_the_technician(steps: list[tuple[Any, ...]], reason: str,
                                                                 code: str) -> None:
    r = rig()
    r.run(steps)
    assert (r.term.state, r.term.view.oos_reason, r.term.view.oos_code) == (State.OUT_OF_SERVICE, reason, code)
    assert rig(no_config=True).term.view.oos_code == "C3"  # no code given by the loader: "a key is invalid"


def test_every_press_tells_its_outcome() -> None:
    """A press before the close, a second press and a refused press are told apart (not dropped silently)."""
    from device.state import Outcome, PressFeedback

    sink = MemorySink()
    term = Terminal(make_config(), sink, FakeClock())
    heard: list[PressFeedback] = []
    term.press_listeners.append(heard.append)

    def press(score: int) -> Outcome:
        term.clock.advance(500)  # type: ignore[attr-defined]
        n = len(heard)
        term.press(score, "button")
        assert len(heard) == n + 1, "every press the citizen makes is answered"
        return heard[-1].outcome

    login = QmsEvent(v=1, type="officer_login", counter="q01", officer="cb01", at=T0_WALL)
    term.on_qms(login)
    assert press(4) == Outcome.TOO_EARLY
    term.on_qms(QmsEvent(v=1, type="ticket_closed", counter="q01", officer="cb01", ticket="A-1", at=T0_WALL))
    assert press(4) == Outcome.ACCEPTED and term.state == State.THANKS
    assert press(3) == Outcome.ALREADY_RATED  # on "Cảm ơn"
    term.clock.advance(3000)  # type: ignore[attr-defined]
    term.tick()
    assert press(3) == Outcome.ALREADY_RATED  # idle again, same citizen within the rating window
    term.clock.advance(60_000)  # type: ignore[attr-defined]
    assert press(3) == Outcome.TOO_EARLY  # a minute later: the next citizen, before their close
    term.on_qms(QmsEvent(v=1, type="ticket_closed", counter="q01", officer="cb01", ticket="A-2",
                         at=term.clock.wall_ms()))
    sink.full = True
    assert press(4) == Outcome.NOT_NOW and term.state == State.OUT_OF_SERVICE  # not stored: no thanks
    assert press(4) == Outcome.NOT_NOW
    n = len(heard)
    term.press(4, "button")  # same instant: a contact bounce, part of the press already answered
    assert len(heard) == n and [d.ticket for d in sink.drafts] == ["A-1"]


def test_extra_time_mode_lengthens_every_screen_but_never_the_rating_window() -> None:
    r = rig({"display": {"extra_time": True}, "prompt_timeout_s": 40})  # 40 s x 2 > the 60 s window
    r.run([*SERVED, ("wait", 59.9)])
    assert r.term.state == State.PROMPT and r.term.view.extra_time and not r.term.view.large_text
    r.run([("wait", 0.1)])
    assert r.term.state == State.IDLE and r.term.stats.not_rated == 1  # the window bounds it
    r.run([("call", "A-2"), ("close", "A-2"), ("press", 1), ("wait", 29.9)])
    assert r.term.state == State.REASONS  # 15 s x 2
    r.run([("wait", 0.1), ("wait", 5.9)])
    assert r.term.state == State.THANKS and len(r.sink.drafts) == 1  # 3 s x 2
    r.run([("wait", 0.1)])
    assert r.term.state == State.IDLE


def test_the_citizens_button_gives_large_text_and_time_until_thanks_ends() -> None:
    r = rig()
    r.run([*SERVED, ("wait", 10)])
    assert not r.term.view.large_text and not r.term.view.assist
    r.term.set_assist(True)
    assert r.term.view.large_text and r.term.view.extra_time and r.term.view.assist
    r.run([("wait", 49.9)])  # 30 s + 30 s more, and the 60 s window ends there too
    assert r.term.state == State.PROMPT
    r.run([("press", 1), ("wait", 29.9)])
    assert r.term.state == State.REASONS and r.term.view.large_text  # REASONS: 15 s x 2
    r.run([("skip",), ("wait", 5.9)])
    assert r.term.state == State.THANKS and r.term.view.assist
    r.run([("wait", 0.1)])
    assert r.term.state == State.IDLE and not r.term.view.large_text and not r.term.view.assist
    # a prompt left unrated also ends it; a terminal without the button ignores it
    r.run([("call", "A-2"), ("close", "A-2")])
    r.term.set_assist(True)
    r.run([("wait", 60)])
    assert r.term.state == State.IDLE and not r.term.view.assist
    r = rig({"display": {"citizen_toggle": False, "large_text": True}})
    r.run([*SERVED])
    r.term.set_assist(True)
    assert not r.term.view.assist and r.term.view.large_text and not r.term.view.extra_time
