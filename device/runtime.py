"""Wires one terminal together: config -> outbox + state machine + MQTT link (+ buttons).

The UI (device/ui/) and the headless runner both build a :class:`DeviceRuntime`
and differ only in ``dispatch``: how events from other threads (MQTT, GPIO)
reach the one thread that owns the state machine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.contract import DeviceConfigUpdate

from .config import DeviceConfig
from .link import DeviceLink
from .outbox import Outbox
from .state import Clock, RatingDraft, State, Terminal

if TYPE_CHECKING:
    from .audio import Speaker

log = logging.getLogger("hailong.device")

Dispatch = Callable[[Callable[[], None]], None]


class HeadlessLoop:
    """The state machine's thread when there is no Kivy: runs posted calls and ticks timeouts."""

    def __init__(self, tick: Callable[[], None] | None = None, tick_s: float = 0.2) -> None:
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._tick = tick
        self._tick_s = tick_s
        self._thread = threading.Thread(target=self._run, name="hl-terminal", daemon=True)

    def post(self, fn: Callable[[], None]) -> None:
        self._q.put(fn)

    def start(self, tick: Callable[[], None] | None = None) -> HeadlessLoop:
        self._tick = tick or self._tick
        self._thread.start()
        return self

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_s
        while True:
            try:
                fn = self._q.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                fn = self._noop
            if fn is None:
                return
            self._call(fn)
            if time.monotonic() >= next_tick:  # timeouts fire even under a steady stream of events
                next_tick = time.monotonic() + self._tick_s
                if self._tick is not None:
                    self._call(self._tick)

    @staticmethod
    def _noop() -> None:
        pass

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("terminal event failed")


class DeviceRuntime:
    """Outbox, state machine and MQTT link for one device config."""

    def __init__(self, config: DeviceConfig, dispatch: Dispatch, clock: Clock | None = None) -> None:
        self.config = config
        self.outbox = Outbox(config.outbox.path, device=config.device_id, centre=config.centre,
                             counter=config.counter, max_ratings=config.outbox.max_ratings,
                             high_water=config.outbox.high_water)
        self.terminal = Terminal(config, self, clock)
        if config.web_link.enabled:  # the QR to rate later, signed with this counter's own key
            from .later import RatingLinkSigner

            self.terminal.later_links = RatingLinkSigner(config)
        self.link = DeviceLink(
            config.mqtt, device=config.device_id, centre=config.centre, counter=config.counter, outbox=self.outbox,
            on_qms=self.terminal.on_qms, on_config=self.apply_update, state=lambda: self.terminal.state.value,
            dispatch=dispatch, heartbeat_s=config.heartbeat_s,
        )
        self._reported: tuple[bool, bool] | None = None
        self.terminal.listeners.append(lambda _v: self._report_if_changed())
        self.speaker = self._speaker(config, dispatch)

    def _speaker(self, config: DeviceConfig, dispatch: Dispatch) -> Speaker | None:
        """Spoken prompts when ``[audio] enabled``; a silent terminal never opens an audio device."""
        if not config.audio.enabled:
            return None
        from .audio import Speaker
        from .i18n import load_catalogue

        # the voices are Vietnamese; a sequence starts after the current event (Kivy: after its frame)
        speaker = Speaker(config.audio, load_catalogue("vi"), defer=dispatch)
        self.terminal.listeners.append(speaker.on_view)
        self.terminal.press_listeners.append(speaker.on_press)
        return speaker

    def _report_if_changed(self) -> None:
        # Technicians should not wait a heartbeat to see a terminal go out of service or its
        # outbox pass the high-water mark: publish the status at once when either flips.
        now = (self.terminal.state == State.OUT_OF_SERVICE, self.outbox.nearly_full)
        if now != self._reported:
            self._reported = now
            self.link.publish_status()

    # RatingSink for the terminal: durable first, then hand to the drain thread
    def commit(self, draft: RatingDraft) -> object:
        event = self.outbox.commit(draft)
        self.link.kick()
        self._report_if_changed()
        return event

    def has_room(self) -> bool:
        return self.outbox.has_room()

    def apply_update(self, update: DeviceConfigUpdate) -> None:
        """A retained admin update: applied live, or refused (and logged) when it would be invalid."""
        try:
            new = self.config.with_update(update)
        except ValueError as exc:
            log.error("config update issued_at=%s refused: %s", update.issued_at, exc)
            return
        self.config = new
        self.terminal.apply_config(new)
        log.info("config update issued_at=%s applied", update.issued_at)

    def start(self) -> DeviceRuntime:
        self.link.start()
        return self

    def stop(self) -> None:
        self.link.stop()
        self.outbox.close()
        if self.speaker is not None:
            self.speaker.close()
