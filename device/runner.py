"""Run one terminal: with the Kivy screen, or headless (button-only unit)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from broker.kernel.systemd import Watchdog

from .config import DeviceConfig
from .runtime import DeviceRuntime, HeadlessLoop
from .state import RatingDraft, StorageFull, Terminal

log = logging.getLogger("hailong.device")


class _RefusingSink:
    """Sink for a terminal with no valid config: nothing can be rated, nothing is stored."""

    def commit(self, draft: RatingDraft) -> object:
        raise StorageFull("no valid configuration")

    def has_room(self) -> bool:
        return False


def _buttons(cfg: DeviceConfig, terminal: Terminal, dispatch: Callable[[Callable[[], None]], None],
             pin_factory: Any = None) -> Any:
    if cfg.hardware == "touch":
        return None
    from .buttons import ButtonPanel

    panel = ButtonPanel(cfg.gpio, press=terminal.press, served=terminal.served, dispatch=dispatch,
                        pin_factory=pin_factory)
    terminal.listeners.append(panel.show)
    terminal.press_listeners.append(panel.feedback)  # every press answered: accepted, too early, already rated
    return panel


def run_headless(cfg: DeviceConfig, pin_factory: Any = None, stop: threading.Event | None = None) -> None:
    """A button-only unit: no Kivy at all. Runs until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or threading.Event()
    loop = HeadlessLoop()
    rt = DeviceRuntime(cfg, loop.post)
    panel = _buttons(cfg, rt.terminal, loop.post, pin_factory)
    watchdog = Watchdog()

    def tick() -> None:
        rt.terminal.tick()
        watchdog.beat()

    loop.start(tick)
    rt.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: stop.set())
    log.info("terminal %s running headless (%s)", cfg.device_id, cfg.hardware)
    try:
        stop.wait()
    finally:
        if panel is not None:
            panel.close()
        rt.stop()
        loop.stop()


def run_screen(cfg: DeviceConfig | None, *, width: int = 800, height: int = 480, config_error: str = "",
               config_code: str = "", device_id: str = "",
               before_run: Callable[[DeviceRuntime | None], None] | None = None) -> None:
    """The touch terminal. With ``cfg`` None it only shows OUT_OF_SERVICE: ``config_code`` and the
    ``device_id`` the invalid file names (``config_error`` is kept for the log, never drawn)."""
    from .ui.boot import prepare_kivy

    prepare_kivy(width, height, fullscreen=bool(cfg and cfg.fullscreen))
    from .ui.app import TerminalApp, kivy_dispatch

    if cfg is None:
        log.error("out of service (%s): %s", config_code or "C3", config_error)
        TerminalApp(Terminal(None, _RefusingSink(), config_error=config_error, config_code=config_code),
                    device_id, on_tick=Watchdog().beat).run()
        return
    rt = DeviceRuntime(cfg, kivy_dispatch)
    panel = _buttons(cfg, rt.terminal, kivy_dispatch)
    if before_run is not None:
        before_run(rt)
    rt.start()
    try:
        TerminalApp(rt.terminal, cfg.device_id, on_tick=Watchdog().beat).run()
    finally:
        if panel is not None:
            panel.close()
        rt.stop()
