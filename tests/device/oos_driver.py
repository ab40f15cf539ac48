"""Renders the out-of-service screens a citizen can meet; run by test_ui.py, one process per case.

    python -m tests.device.oos_driver no_config CONFIG OUT_DIR RESULTS_JSON
    python -m tests.device.oos_driver storage CONFIG OUT_DIR RESULTS_JSON

``no_config`` runs the real command (``hailong device run --config CONFIG --on-config-error
screen``) and captures the screen it opens. ``storage`` runs the terminal on a sink whose
commit fails the two ways the outbox can (an OSError naming a path, then StorageFull) and
captures both screens in vi and en. Each capture records every text property drawn on the
screen (Label.text, the FitLabel's source), so the test reads what a citizen reads.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.ui.boot import prepare_kivy

prepare_kivy(800, 480, fullscreen=False, home=os.environ.get("KIVY_HOME"))

from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.uix.label import Label  # noqa: E402

from broker.contract import QmsEvent  # noqa: E402
from device.state import RatingDraft, State, StorageFull, Terminal  # noqa: E402
from device.ui.app import TerminalApp  # noqa: E402

RESULTS: dict[str, Any] = {"captures": [], "errors": []}


def texts(app: TerminalApp) -> list[str]:
    return [w.text for w in app.current_screen().walk() if isinstance(w, Label) and w.text]


def capture(app: TerminalApp, out: Path, name: str) -> None:
    view = app.terminal.view
    path = out / f"{name}_{view.language}_800x480.png"
    os.replace(Window.screenshot(str(path)), path)
    RESULTS["captures"].append({"name": name, "lang": view.language, "state": view.state.value,
                                "reason": view.oos_reason, "code": view.oos_code, "texts": texts(app),
                                "shot": path.name})


def run_steps(app: TerminalApp, steps: list[Callable[[], None]]) -> None:
    """One step per 0.3 s, so each change is drawn before the next capture."""
    def step(_dt: float) -> bool:
        try:
            if steps:
                steps.pop(0)()
                return True
        except Exception:
            RESULTS["errors"].append(traceback.format_exc())
        app.stop()
        return False
    Clock.schedule_interval(step, 0.3)


def both_languages(app: TerminalApp, out: Path, name: str) -> list[Callable[[], None]]:
    return [lambda: capture(app, out, name), lambda: app.terminal.set_language("en"),
            lambda: capture(app, out, name), lambda: app.terminal.set_language("vi")]


def no_config(config: str, out: Path, name: str) -> None:
    from device.cli import device

    sys.stderr = sys.__stderr__  # Kivy (imported above, unlike in the real command) wraps stderr; click writes there

    def started(app: TerminalApp) -> None:
        run_steps(app, [lambda: None, *both_languages(app, out, name)])

    TerminalApp.on_start = lambda self: started(self)  # type: ignore[method-assign]
    try:
        device.main(["run", "--config", config, "--on-config-error", "screen"], standalone_mode=False)
    except SystemExit as exc:
        RESULTS["exit"] = exc.code


class FailingSink:
    """The outbox failing as it can: an OSError (with a path in its text), or full."""

    def __init__(self) -> None:
        self.fail: BaseException | None = None

    def commit(self, draft: RatingDraft) -> object:
        if self.fail is not None:
            raise self.fail
        return draft

    def has_room(self) -> bool:
        return self.fail is None  # the terminal retries when there is room again: not while failing


def storage(config: str, out: Path) -> None:
    from device.config import load_device_config

    cfg = load_device_config(config)
    sink = FailingSink()
    term = Terminal(cfg, sink)
    app = TerminalApp(term, cfg.device_id, tick_s=0.1)

    def rate(ticket: str, fail: BaseException) -> None:
        sink.fail = fail
        for kind in ("officer_login", "ticket_closed"):
            term.on_qms(QmsEvent(v=1, type=kind, counter=cfg.counter, officer="cb01",  # type: ignore[arg-type]
                                 ticket=ticket if kind == "ticket_closed" else None, at=term.clock.wall_ms()))
        assert term.state == State.PROMPT, term.state
        term.press(cfg.scale, "touch")

    def recover() -> None:
        sink.fail = None
        term.tick()

    disk = OSError(5, "disk I/O error", "/var/lib/hailong/outbox.sqlite3")
    steps: list[Callable[[], None]] = [
        lambda: rate("S-1", disk), *both_languages(app, out, "oos_storage_error"), recover,
        lambda: rate("S-2", StorageFull("outbox holds 50000 of 50000 ratings; MQTT broker unreachable")),
        *both_languages(app, out, "oos_outbox_full")]
    app.on_started = lambda a: run_steps(a, steps)
    app.run()


def main() -> None:
    mode, config, out, results = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    try:
        if mode == "no_config":
            no_config(config, out, sys.argv[5])
        else:
            storage(config, out)
    except BaseException:
        RESULTS["errors"].append(traceback.format_exc())
        raise
    finally:
        results.write_text(json.dumps(RESULTS, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
