"""The terminal's state machine: pure Python, no Kivy, no MQTT, no GPIO.

IDLE -> PROMPT (ticket closed) -> [REASONS (low score)] -> THANKS -> IDLE;
PROMPT timed out -> LATER (a QR to rate that ticket from a phone, when ``[web_link]`` is
set) -> IDLE after ``web_link.show_s`` or at the next QMS call or close; and
OUT_OF_SERVICE whenever the terminal cannot take an honest rating (no config,
no officer logged in, outbox full). The UI, the GPIO buttons and the MQTT link
only call the methods below and render :class:`View`; everything that decides
whether a press becomes a rating lives here so it can be tested table-driven
with a fake clock.

Integrity rules enforced here (officers are scored on this data):
- one rating per ticket; a ticket is rated only within ``rating_window_s`` of
  its close, and only while its prompt is showing;
- presses repeated inside the debounce time, the thank-you screen or (for
  walk-ups) the rating window collapse into the one rating already taken;
- walk-up ratings (no ticket) only when configured, flagged by ``ticket=None``;
- a wrong tap is undone only BEFORE the rating is committed: REASONS -> PROMPT
  ("Chọn lại") drops the uncommitted draft and shows the faces again for the same
  ticket, inside its rating window. A committed rating is never withdrawn, so
  THANKS still means "stored" and the outbox still keeps it until the PUBACK.

Single-threaded by design: callers marshal events onto one thread (Kivy's
main thread, or the headless runner's loop).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, Protocol

from broker.contract import QmsEvent

from .config import DeviceConfig

log = logging.getLogger("hailong.device.state")

InputKind = Literal["touch", "button"]


class State(StrEnum):
    IDLE = "idle"
    PROMPT = "prompt"
    REASONS = "reasons"
    THANKS = "thanks"
    LATER = "later"  # "Quét mã để đánh giá sau": the unrated ticket's rating link as a QR code
    OUT_OF_SERVICE = "out_of_service"


class Outcome(StrEnum):
    """What a citizen's press came to, for the feedback a button unit and the speaker give.

    Before these, a press before the QMS close and a second press after rating were only
    counted in ``Stats.ignored``: a citizen who cannot see the screen could not tell
    "too early" from "not registered".
    """

    ACCEPTED = "accepted"  # the press started or completed a rating
    TOO_EARLY = "too_early"  # no ticket closed yet: wait for the officer to finish the ticket
    ALREADY_RATED = "already_rated"  # this citizen's rating is taken (thank-you showing, or just rated)
    NOT_NOW = "not_now"  # no rating possible now (out of service, window passed)


@dataclass(frozen=True, slots=True)
class PressFeedback:
    """One judged press: its outcome, the level pressed, how, and the reason when refused."""

    outcome: Outcome
    score: int
    input: InputKind
    why: str | None = None


# refusals that say nothing to the citizen: a contact bounce is part of a press already judged
_SILENT = frozenset({"bounce", "bad_score"})
_OUTCOME_OF = {"no_config": Outcome.NOT_NOW, "rate_limited": Outcome.ALREADY_RATED,
               "outside_window": Outcome.NOT_NOW, "no_ticket": Outcome.TOO_EARLY,
               "collapsed": Outcome.ALREADY_RATED, "in_thanks": Outcome.ALREADY_RATED,
               "in_reasons": Outcome.ALREADY_RATED, "in_out_of_service": Outcome.NOT_NOW,
               "in_later": Outcome.NOT_NOW}


class Clock(Protocol):
    def wall_ms(self) -> int: ...
    def mono_ms(self) -> int: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


class RatingSink(Protocol):
    """Where a finished rating goes (the outbox). ``commit`` must be durable when it returns."""

    def commit(self, draft: RatingDraft) -> object: ...
    def has_room(self) -> bool: ...


class StorageFull(Exception):
    """The sink refused a rating because it is at its cap."""


@dataclass(frozen=True, slots=True)
class RatingDraft:
    """A rating as the citizen gave it; the outbox adds event_id, seq, boot_id and sent_at."""

    officer: str
    ticket: str | None
    service: str | None
    dossier: str | None
    closed_at: int | None
    scale: Literal[3, 4, 5]
    score: int
    reasons: tuple[str, ...]
    input: InputKind
    rated_at: int
    mono_ms: int
    ticket_id: str | None = None  # the QMS's own ticket identity from the close, carried into the RatingEvent


@dataclass(frozen=True, slots=True)
class BoundTicket:
    """The ticket a prompt is about. ``closed_mono`` is the device clock when the close arrived."""

    ticket: str | None
    officer: str
    service: str | None
    dossier: str | None
    closed_at: int | None
    closed_mono: int
    ticket_id: str | None = None  # vendor ticket identity (QMS close), so the ingest binds to exactly this ticket


@dataclass(frozen=True)
class View:
    """What the screen / LEDs show; a new instance after every change."""

    state: State
    language: str
    scale: int
    centre_name: str = ""
    counter_label: str = ""
    officer_name: str | None = None
    serving_ticket: str | None = None
    prompt_ticket: str | None = None
    prompt_ticket_id: str | None = None
    prompt_officer: str | None = None
    rated_officer_name: str | None = None  # whom PROMPT/REASONS/THANKS are about: the close's officer, by name
    reasons_offered: tuple[str, ...] = ()
    reasons_chosen: tuple[str, ...] = ()
    score: int | None = None
    oos_reason: str | None = None
    oos_detail: str = ""  # for the log and tests; never drawn (it may hold exception text or a path)
    oos_code: str = ""    # the short code the screen shows a technician (OOS_CODES)
    large_text: bool = False  # the terminal's large-text mode, or the citizen's "Chữ lớn"
    extra_time: bool = False  # the terminal's extra-time mode, or the citizen's "Chữ lớn"
    assist: bool = False      # the citizen's "Chữ lớn" is on (its button shows it pressed)
    assist_offered: bool = False  # the "Chữ lớn" button is shown (display.citizen_toggle)
    later_url: str | None = None  # LATER: the rating link of the ticket left unrated (drawn as a QR code)
    later_ticket: str | None = None
    later_days: int = 0  # the link stays valid the rest of the service day and this many days


# Out-of-service reasons; the UI shows a catalogue message per code that tells a technician what to do.
OOS_NO_CONFIG = "no_config"
OOS_NO_OFFICER = "no_officer"
OOS_OUTBOX_FULL = "outbox_full"
OOS_STORAGE = "storage_error"
# Short codes drawn on the out-of-service screen for the technician (docs/technician.md lists them).
# A terminal without a valid config is given its code by whoever read the file (device.config.config_error_code).
OOS_CODES = {OOS_NO_CONFIG: "C3", OOS_NO_OFFICER: "L1", OOS_OUTBOX_FULL: "S1", OOS_STORAGE: "S2"}

_REMEMBERED_TICKETS = 2000  # closes remembered to reject QoS1 redeliveries / repeats
# Without a vendor ticket id, the same number closed again within this time is a recall/redelivery of
# one ticket; later it is another ticket (queue numbers restart every morning: yesterday's A001 must not
# silence today's). Shorter than a night (last close ~17:00 -> first close ~07:30), longer than a day's service.
_SAME_NUMBER_MS = 12 * 3600 * 1000


@dataclass
class Stats:
    rated: int = 0
    not_rated: int = 0
    rechosen: int = 0  # low-score taps taken back on the reasons screen before anything was stored
    ignored: Counter[str] = field(default_factory=Counter)


LaterLinks = Callable[[BoundTicket], str | None]


class Terminal:
    """The state machine. Call :meth:`tick` at least a few times a second (or at :meth:`next_deadline`).

    ``later_links`` (set by the runtime when ``[web_link]`` is enabled) makes the signed rating link of a
    ticket whose prompt timed out; None: no QR screen."""

    def __init__(self, config: DeviceConfig | None, sink: RatingSink, clock: Clock | None = None,
                 config_error: str = "", config_code: str = "") -> None:
        self.config = config
        self.sink = sink
        self.clock = clock or SystemClock()
        self.stats = Stats()
        self.listeners: list[Callable[[View], None]] = []
        self.press_listeners: list[Callable[[PressFeedback], None]] = []  # every judged press (LEDs, speaker)
        self._config_error = config_error
        self._config_code = config_code or OOS_CODES[OOS_NO_CONFIG]
        self._officer: str | None = config.officer_id if config else None
        self._serving: str | None = None
        self._bound: BoundTicket | None = None
        self._next: BoundTicket | None = None
        self._draft: RatingDraft | None = None
        self._undo: BoundTicket | None = None  # the ticket behind the draft, for "Chọn lại"
        self._chosen: list[str] = []
        self._closed: OrderedDict[str, int] = OrderedDict()  # ticket key -> close time (QMS clock, ms)
        self._deadline: int | None = None
        self._last_press = -(10**12)
        self._last_rating = -(10**12)
        self._storage_reason: str | None = None
        self._oos_detail = ""
        self._view_score: int | None = None
        self._view_officer: str | None = None  # the officer of the rating being thanked for
        self._language: str = config.language if config else "vi"
        self._assist = False  # the citizen's "Chữ lớn": large text and extra time until THANKS ends
        self.later_links: LaterLinks | None = None
        self._later: tuple[str, str] | None = None  # LATER: (url, ticket)
        self.state = State.OUT_OF_SERVICE
        self._view = self._make_view()
        self._rest()

    # ------------------------------------------------------------------ inputs

    def apply_config(self, config: DeviceConfig) -> None:
        """A new config (file reload or retained update): applied at once, the current citizen keeps going."""
        language_was_default = self.config is None or self._language == self.config.language
        if self.config is None or config.officer_id != self.config.officer_id:
            self._officer = self._officer or config.officer_id
        self.config, self._config_error = config, ""
        if language_was_default:
            self._language = config.language
        if self.state in (State.IDLE, State.OUT_OF_SERVICE):
            self._rest()
        else:
            self._emit()

    def on_qms(self, event: QmsEvent) -> None:
        cfg = self.config
        if cfg is None or event.counter != cfg.counter:
            return
        if event.type == "officer_login":
            self._officer = event.officer
        elif event.type == "officer_logout":
            if event.officer == self._officer:
                self._officer = None
                self._serving = None
                if self.state == State.PROMPT:
                    self._not_rated()
        elif event.type == "ticket_called":
            if self._stale(event):  # yesterday's call (queued while offline) says nothing about who is here now
                self.stats.ignored["stale_call"] += 1
            else:
                self._officer = event.officer  # a call proves who is at the counter, even if we missed the login
                self._serving = event.ticket
                if self.state == State.LATER:  # the next citizen is called: the QR was for the one before
                    self._rest()
                    return
        elif event.type == "ticket_closed":
            if not self._stale(event):
                self._officer = event.officer
            self._ticket_closed(event)
            return
        if self.state in (State.IDLE, State.OUT_OF_SERVICE):
            self._rest()
        else:
            self._emit()

    def served(self) -> None:
        """manual_served mode: the officer pressed 'served'; the next citizen may rate."""
        cfg = self.config
        if cfg is None or cfg.mode != "manual_served" or self._officer is None:
            self.stats.ignored["served_not_applicable"] += 1
            return
        now = self.clock.wall_ms()
        # No QMS: the device names the service "M-<close time>" so it is still one rating per service.
        bound = BoundTicket(f"M-{now}", self._officer, None, None, now, self.clock.mono_ms())
        self._offer(bound)

    def press(self, score: int, input: InputKind = "touch") -> bool:
        """A citizen pressed a level. Returns True when it started or completed a rating.

        Every press that means something to the citizen is told to ``press_listeners``
        (after the state change, so a listener sees the THANKS view of an accepted press).
        """
        why = self._judge_press(score, input)
        if why is None:  # taken; unless the outbox refused it (out of service: nothing stored, no thanks)
            outcome: Outcome | None = Outcome.NOT_NOW if self.state == State.OUT_OF_SERVICE else Outcome.ACCEPTED
        else:
            self.stats.ignored[why] += 1
            outcome = None if why in _SILENT else self._refusal(why)
        if outcome is not None:
            feedback = PressFeedback(outcome, score, input, why)
            for fn in list(self.press_listeners):
                try:
                    fn(feedback)
                except Exception:
                    log.exception("press listener failed")
        return why is None

    def _refusal(self, why: str) -> Outcome:
        cfg = self.config
        if why == "no_ticket" and cfg is not None \
                and self.clock.mono_ms() - self._last_rating < cfg.rating_window_s * 1000:
            return Outcome.ALREADY_RATED  # idle again after the thank-you: the same citizen pressing again
        return _OUTCOME_OF.get(why, Outcome.NOT_NOW)

    def _judge_press(self, score: int, input: InputKind) -> str | None:
        """Rate the press, or return why it is refused (a key of ``Stats.ignored``)."""
        cfg = self.config
        mono = self.clock.mono_ms()
        if cfg is None:
            return "no_config"
        if mono - self._last_press < cfg.gpio.debounce_ms:
            return "bounce"
        self._last_press = mono
        if not 1 <= score <= cfg.scale:
            return "bad_score"
        if self.state == State.PROMPT:
            if cfg.mode == "always_on" and mono - self._last_rating < cfg.always_on_min_interval_s * 1000:
                return "rate_limited"
            assert self._bound is not None
            if self._bound.ticket is not None and mono - self._bound.closed_mono > cfg.rating_window_s * 1000:
                self._not_rated()
                return "outside_window"
            self._rate(self._bound, score, input)
            return None
        if self.state == State.IDLE:
            if not cfg.walkup_allowed:
                return "no_ticket"
            if mono - self._last_rating < cfg.rating_window_s * 1000:
                return "collapsed"  # the same citizen pressing again after rating
            assert self._officer is not None
            walkup = BoundTicket(None, self._officer, None, None, None, mono)
            self._rate(walkup, score, input)
            return None
        return f"in_{self.state.value}"

    def toggle_reason(self, code: str) -> None:
        if self.state != State.REASONS or self.config is None or code not in self.config.reasons:
            return
        if code in self._chosen:
            self._chosen.remove(code)
        else:
            self._chosen.append(code)
        self._emit()

    def submit_reasons(self) -> None:
        if self.state == State.REASONS:
            self._finish(tuple(self._chosen))

    def skip_reasons(self) -> None:
        if self.state == State.REASONS:
            self._finish(())

    def rechoose(self) -> None:
        """"Chọn lại": back from REASONS to the faces for the same ticket; the draft was never stored.

        Only inside the ticket's rating window (the same rule as a press); the new prompt
        times out at the earlier of the window's end and a fresh ``prompt_timeout_s``.
        """
        cfg = self.config
        if self.state != State.REASONS or cfg is None or self._undo is None:
            self._ignore("rechoose_not_applicable")
            return
        bound, mono = self._undo, self.clock.mono_ms()
        window_end = bound.closed_mono + cfg.rating_window_s * 1000
        if bound.ticket is not None and mono >= window_end:
            self._ignore("rechoose_outside_window")
            return
        self._draft, self._chosen, self._undo = None, [], None
        self.stats.rechosen += 1
        if bound.ticket is None:  # an always_on walk-up: its prompt is the resting screen
            self._rest()
            return
        self._bound = bound
        self._deadline = min(window_end, mono + self._ms(cfg.prompt_timeout_s))
        self._go(State.PROMPT)

    def set_language(self, language: str) -> None:
        """The citizen's language toggle; back to the configured default after THANKS."""
        if language in ("vi", "en") and language != self._language:
            self._language = language
            self._emit()

    def set_assist(self, on: bool) -> None:
        """The citizen's "Chữ lớn" button: large text and extra time for this citizen, back to the
        terminal's own modes after THANKS (or when the prompt is left unrated). Turned on, it
        lengthens the running screen's time at once; the prompt never past the rating window."""
        cfg = self.config
        if cfg is None or on == self._assist or not cfg.display.citizen_toggle:
            return
        self._assist = on
        if on and not cfg.display.extra_time and self._deadline is not None:
            more = cfg.display.extra_time_factor - 1
            if self.state == State.PROMPT and self._bound is not None and self._bound.ticket is not None:
                window_end = self._bound.closed_mono + cfg.rating_window_s * 1000
                self._deadline = min(window_end, self._deadline + int(more * cfg.prompt_timeout_s * 1000))
            elif self.state == State.REASONS:
                self._deadline += int(more * cfg.reasons_timeout_s * 1000)
        self._emit()

    def _ms(self, seconds: float) -> int:
        """A screen's time in ms, lengthened in extra-time mode."""
        cfg = self.config
        factor = cfg.display.extra_time_factor if cfg and (cfg.display.extra_time or self._assist) else 1.0
        return int(seconds * factor * 1000)

    def tick(self) -> None:
        """Fire the current state's timeout if due; retry storage after outbox-full."""
        mono = self.clock.mono_ms()
        if self.state == State.OUT_OF_SERVICE and self._storage_reason is not None:
            if self.sink.has_room():
                self._storage_reason = None
                self._rest()
            return
        if self._deadline is None or mono < self._deadline:
            return
        if self.state == State.PROMPT:
            self._not_rated(timed_out=True)
        elif self.state == State.REASONS:
            self._finish(tuple(self._chosen))
        elif self.state == State.THANKS:
            self._after_thanks()
        elif self.state == State.LATER:
            self._rest()

    # ------------------------------------------------------------------ queries

    @property
    def view(self) -> View:
        return self._view

    @property
    def officer(self) -> str | None:
        return self._officer

    def next_deadline(self) -> int | None:
        """Monotonic ms of the next timeout, for callers that schedule instead of polling."""
        return self._deadline

    # ------------------------------------------------------------------ transitions

    def _ticket_closed(self, event: QmsEvent) -> None:
        cfg = self.config
        assert cfg is not None and event.ticket is not None
        if self._seen_close(event.ticket, event.ticket_id, event.at):
            self.stats.ignored["repeated_close"] += 1
            return
        self._remember(event.ticket, event.ticket_id, event.at)
        if self._serving == event.ticket:
            self._serving = None
        if self._stale(event):
            self.stats.ignored["stale_close"] += 1
            self._emit()
            return
        if cfg.mode == "always_on":
            self._emit()
            return
        bound = BoundTicket(event.ticket, event.officer, event.service, event.dossier, event.at,
                            self.clock.mono_ms(), event.ticket_id)
        self._offer(bound)

    def _stale(self, event: QmsEvent) -> bool:
        """A call/close that reaches us long after it happened (queued while we were offline): it must not
        prompt the next citizen for someone else's ticket, nor name the officer at the counter now.
        Only trusted when our clock is plausibly set."""
        cfg = self.config
        now = self.clock.wall_ms()
        return cfg is not None and now > 1_600_000_000_000 and now - event.at > cfg.rating_window_s * 1000

    def _offer(self, bound: BoundTicket) -> None:
        if self.state in (State.REASONS, State.THANKS):
            self._next = bound  # the previous citizen finishes first
            return
        if self.state == State.PROMPT:
            if self._next is not None:  # (after "Chọn lại") a ticket waiting behind is superseded too
                self.stats.not_rated += 1
                self._next = None
            self._not_rated()
        if self._blocked() is not None:
            return
        self._prompt(bound)

    def _prompt(self, bound: BoundTicket) -> None:
        cfg = self.config
        assert cfg is not None
        self._bound = bound
        if bound.ticket is None:  # always_on: no ticket, no timeout
            self._deadline = None
        else:
            self._deadline = bound.closed_mono + min(self._ms(cfg.prompt_timeout_s), cfg.rating_window_s * 1000)
        self._go(State.PROMPT)

    def _rate(self, bound: BoundTicket, score: int, input: InputKind) -> None:
        cfg = self.config
        assert cfg is not None
        self._draft = RatingDraft(
            officer=bound.officer, ticket=bound.ticket, service=bound.service, dossier=bound.dossier,
            closed_at=bound.closed_at if bound.ticket is not None else None, scale=cfg.scale, score=score,
            reasons=(), input=input, rated_at=self.clock.wall_ms(), mono_ms=self.clock.mono_ms(),
            ticket_id=bound.ticket_id if bound.ticket is not None else None,
        )
        self._bound = None
        wants_reasons = cfg.hardware != "buttons" and cfg.reasons and score <= cfg.ask_reasons_at_most
        if wants_reasons and input == "touch":
            self._chosen = []
            self._undo = bound
            self._deadline = self.clock.mono_ms() + self._ms(cfg.reasons_timeout_s)
            self._go(State.REASONS)
        else:
            self._finish(())

    def _finish(self, reasons: tuple[str, ...]) -> None:
        cfg = self.config
        assert self._draft is not None and cfg is not None
        draft = replace(self._draft, reasons=reasons)
        self._draft, self._chosen, self._undo = None, [], None
        try:
            self.sink.commit(draft)  # durable before THANKS: the citizen is thanked only for what is stored
        except StorageFull as exc:
            log.error("rating not stored, outbox full: %s", exc)
            self._storage_reason = OOS_OUTBOX_FULL
            self._oos_detail = str(exc)
            self._rest()
            return
        except Exception as exc:
            log.exception("rating not stored")
            self._storage_reason = OOS_STORAGE
            self._oos_detail = f"{type(exc).__name__}: {exc}"
            self._rest()
            return
        self.stats.rated += 1
        self._last_rating = self.clock.mono_ms()
        if draft.ticket is not None:
            self._remember(draft.ticket, draft.ticket_id, draft.closed_at)
        self._deadline = self.clock.mono_ms() + self._ms(cfg.thanks_s)
        self._view_score, self._view_officer = draft.score, draft.officer
        self._go(State.THANKS)

    def _after_thanks(self) -> None:
        cfg = self.config
        self._language = cfg.language if cfg else self._language
        self._assist = False  # the next citizen starts from the terminal's own modes
        self._continue()

    def _continue(self) -> None:
        """The next citizen's prompt if a ticket closed meanwhile (and is still in its window), else rest."""
        cfg = self.config
        pending, self._next = self._next, None
        if (pending is not None and cfg is not None and self._blocked() is None
                and self.clock.mono_ms() - pending.closed_mono < cfg.rating_window_s * 1000):
            self._prompt(pending)
        else:
            self._rest()

    def _not_rated(self, timed_out: bool = False) -> None:
        self.stats.not_rated += 1
        bound, self._bound = self._bound, None
        self._assist = False  # the citizen left without rating
        if timed_out and self._next is None and bound is not None and self._offer_later(bound):
            return
        self._continue()  # a ticket can only be waiting here after "Chọn lại"; otherwise this rests

    def _offer_later(self, bound: BoundTicket) -> bool:
        """LATER: the QR of ``bound``'s rating link, for a citizen who walked away or needs more time."""
        cfg = self.config
        if cfg is None or self.later_links is None or cfg.mode != "qms" or bound.ticket is None:
            return False
        try:
            url = self.later_links(bound)
        except Exception:  # a link we cannot make is no reason to stop rating: idle, as without [web_link]
            log.exception("rating link for ticket %s not made", bound.ticket)
            return False
        if url is None:
            return False
        self._later = (url, bound.ticket)
        self._deadline = self.clock.mono_ms() + self._ms(cfg.web_link.show_s)
        self._go(State.LATER)
        return True

    def _blocked(self) -> tuple[str, str] | None:
        if self.config is None:
            return OOS_NO_CONFIG, self._config_error
        if self._storage_reason is not None:
            return self._storage_reason, self._oos_detail
        if self._officer is None:
            return OOS_NO_OFFICER, f"counter {self.config.counter}"
        return None

    def _rest(self) -> None:
        """Where the terminal goes when no citizen is mid-rating."""
        self._deadline = None
        self._bound = None
        if self._blocked() is not None:
            self._go(State.OUT_OF_SERVICE)
        elif self.config is not None and self.config.mode == "always_on":
            assert self._officer is not None
            self._prompt(BoundTicket(None, self._officer, None, None, None, self.clock.mono_ms()))
        else:
            self._go(State.IDLE)

    @staticmethod
    def _ticket_key(ticket: str, ticket_id: str | None) -> str:
        # a vendor id names one ticket for ever; a bare number only within _SAME_NUMBER_MS
        return f"id:{ticket_id}" if ticket_id is not None else f"no:{ticket}"

    def _seen_close(self, ticket: str, ticket_id: str | None, at: int) -> bool:
        """A close of a ticket already closed (QoS 1 redelivery) or rated (recall): no second prompt."""
        when = self._closed.get(self._ticket_key(ticket, ticket_id))
        if when is None:
            return False
        return ticket_id is not None or abs(at - when) < _SAME_NUMBER_MS

    def _remember(self, ticket: str, ticket_id: str | None, at: int | None) -> None:
        key = self._ticket_key(ticket, ticket_id)
        self._closed[key] = at if at is not None else self.clock.wall_ms()
        self._closed.move_to_end(key)
        while len(self._closed) > _REMEMBERED_TICKETS:
            self._closed.popitem(last=False)

    def _ignore(self, why: str) -> bool:
        self.stats.ignored[why] += 1
        return False

    def _go(self, state: State) -> None:
        if state != self.state:
            log.debug("state %s -> %s", self.state.value, state.value)
        if state != State.LATER:
            self._later = None
        self.state = state
        self._emit()

    def _make_view(self) -> View:
        cfg = self.config
        if cfg is None:
            return View(State.OUT_OF_SERVICE, self._language, 4, oos_reason=OOS_NO_CONFIG,
                        oos_detail=self._config_error, oos_code=self._config_code)
        blocked = self._blocked() if self.state == State.OUT_OF_SERVICE else None
        # the QMS close names who served this citizen; the terminal's own officer only when it does not
        rated = (self._bound.officer if self._bound is not None else
                 self._draft.officer if self._draft is not None else
                 self._view_officer if self.state == State.THANKS else None)
        return View(
            state=self.state, language=self._language, scale=cfg.scale, centre_name=cfg.centre_name,
            counter_label=cfg.counter_label, officer_name=cfg.officer_name(self._officer),
            serving_ticket=self._serving,
            prompt_ticket=self._bound.ticket if self._bound is not None else None,
            prompt_ticket_id=self._bound.ticket_id if self._bound is not None else None,
            prompt_officer=self._bound.officer if self._bound is not None else None,
            rated_officer_name=cfg.officer_name(rated),
            reasons_offered=cfg.reasons, reasons_chosen=tuple(self._chosen),
            score=self._draft.score if self._draft is not None else
            (self._view_score if self.state == State.THANKS else None),
            oos_reason=blocked[0] if blocked else None, oos_detail=blocked[1] if blocked else "",
            oos_code=OOS_CODES[blocked[0]] if blocked else "",
            large_text=cfg.display.large_text or self._assist, extra_time=cfg.display.extra_time or self._assist,
            assist=self._assist, assist_offered=cfg.display.citizen_toggle,
            later_url=self._later[0] if self._later else None, later_ticket=self._later[1] if self._later else None,
            later_days=cfg.web_link.valid_days,
        )

    def _emit(self) -> None:
        self._view = self._make_view()
        for fn in list(self.listeners):
            try:
                fn(self._view)
            except Exception:
                log.exception("view listener failed")
