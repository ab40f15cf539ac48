"""Drives the real Kivy terminal to its "Quét mã để đánh giá sau" screen under Xvfb; run by test_later_ui.py.

The QMS events go through the real broker (the ingest of the test's web stack sees the same close); the
prompt is left to time out, the QR screen is captured in vi and en at 800x480 with the QR's place on
the image, the URL the terminal signed, and every text drawn; then the next call ends it at once, and a
second unrated ticket's QR ends by itself after ``web_link.show_s``.

    python -m tests.device.later_driver CONFIG OUT_DIR RESULTS_JSON
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from device.ui.boot import prepare_kivy

prepare_kivy(800, 480, fullscreen=False, home=os.environ.get("KIVY_HOME"))

from kivy.core.window import Window  # noqa: E402

from device.state import State  # noqa: E402
from tests.device.ui_driver import Driver, Step  # noqa: E402


class LaterDriver(Driver):
    def later(self, name: str) -> None:
        """Capture the QR screen: screenshot, texts, where the QR is drawn (image coordinates, top-left)."""
        self.shot(name)
        self.measure()
        screen = self.app.current_screen()
        qr = screen.ids.qr
        x, y = qr.to_window(*qr.pos)
        _w, h = Window.size
        view = self.rt.terminal.view
        self.results.setdefault("later", []).append({
            "lang": view.language, "url": view.later_url, "ticket": view.later_ticket,
            "shot": self.results["screens"][-1]["path"], "qr": [x, h - y - qr.height, qr.width, qr.height],
            "texture": list(qr.texture.size) if qr.texture is not None else None})

    def script(self) -> Step:
        frame = 0.3
        self.publish("officer_login")
        yield self.state_is(State.IDLE)
        self.publish("ticket_called", "T-501")
        self.publish("ticket_closed", "T-501")
        yield self.state_is(State.PROMPT)
        yield self.state_is(State.LATER)  # prompt_timeout_s without a touch
        yield frame
        self.later("later")
        self.tap(self.app.current_screen().ids.top.ids.lang)
        yield self.until("language toggled to en", lambda: self.rt.terminal.view.language == "en")
        yield frame
        self.later("later")
        self.tap(self.app.current_screen().ids.top.ids.lang)
        yield self.until("language back to vi", lambda: self.rt.terminal.view.language == "vi")
        self.publish("ticket_called", "T-502")  # the next citizen: the QR was for the one before
        yield self.state_is(State.IDLE)
        self.results["ended_by_call"] = self.rt.terminal.view.serving_ticket
        self.publish("ticket_closed", "T-502")
        yield self.state_is(State.PROMPT)
        yield self.state_is(State.LATER)
        shown = time.monotonic()
        self.results["second_url"] = self.rt.terminal.view.later_url
        yield self.state_is(State.IDLE)
        self.results["shown_s"] = time.monotonic() - shown


def main() -> None:
    config, out, results = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    LaterDriver(config, out, results).run()


if __name__ == "__main__":
    main()
