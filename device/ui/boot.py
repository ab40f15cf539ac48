"""Kivy settings that must be in place before Kivy creates its window. Import this before kivy.app."""

from __future__ import annotations

import logging
import os


def prepare_kivy(width: int = 800, height: int = 480, fullscreen: bool = False, maxfps: int = 30,
                 home: str | None = None) -> None:
    # Our own CLI parses argv; Kivy must not. Console log off: we log through `logging`.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    # The terminal draws no image files: SDL2's own loader is enough, and Kivy then never imports
    # PIL (about 2 MB of the terminal's RSS, bench/device_memory.py).
    os.environ.setdefault("KIVY_IMAGE", "sdl2")
    if not os.environ.get("HAILONG_KIVY_LOG"):  # HAILONG_KIVY_LOG=1 shows Kivy's own log (debugging)
        os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
        os.environ.setdefault("KIVY_NO_FILELOG", "1")
    if home:
        os.environ["KIVY_HOME"] = home
    if not os.environ.get("HAILONG_KIVY_LOG"):
        # Kivy logs its start-up banner through `logging` before its own level applies
        # (and resets the level when it loads): a filter survives that
        logging.getLogger("kivy").addFilter(
            lambda r: r.levelno >= logging.WARNING and not r.getMessage().startswith("Config:"))
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("graphics", "resizable", "1")
    # The idle screen never changes, so the loop only has to wake for touches and timers. 30 fps
    # halves idle CPU against Kivy's 60 (bench/device_idle.py) and still answers a tap in one frame.
    Config.set("graphics", "maxfps", os.environ.get("HAILONG_KIVY_MAXFPS", str(maxfps)))
    Config.set("kivy", "exit_on_escape", "0")
    if not os.environ.get("HAILONG_KIVY_LOG"):
        Config.set("kivy", "log_level", "warning")
    Config.set("input", "mouse", "mouse,disable_multitouch")
