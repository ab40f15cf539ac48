"""systemd's sd_notify protocol, without libsystemd (shared by the terminal and the ingest).

Both run as ``Type=notify`` units with ``WatchdogSec=``: they send ``READY=1``
once working and ``WATCHDOG=1`` from their main loop, so a hung loop gets the
service restarted. Outside systemd (NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger("hailong.systemd")


def sd_notify(message: str) -> bool:
    """Send one sd_notify datagram (e.g. "READY=1", "WATCHDOG=1"); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("ascii"))
        return True
    except OSError as exc:
        log.debug("sd_notify %s failed: %s", message, exc)
        return False


def watchdog_interval_s(default: float = 10.0) -> float:
    """Half of systemd's WatchdogSec (WATCHDOG_USEC), as sd_watchdog_enabled(3) recommends."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    return int(usec) / 2_000_000 if usec.isdigit() and int(usec) > 0 else default


class Watchdog:
    """Call :meth:`beat` from the main loop: READY=1 the first time, then WATCHDOG=1 every interval."""

    def __init__(self, interval_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 notify: Callable[[str], bool] = sd_notify) -> None:
        self.interval_s = watchdog_interval_s() if interval_s is None else interval_s
        self._clock = clock
        self._notify = notify
        self._last: float | None = None

    def beat(self) -> None:
        now = self._clock()
        if self._last is None:
            self._notify("READY=1")
            self._notify("WATCHDOG=1")
            self._last = now
        elif now - self._last >= self.interval_s:
            self._notify("WATCHDOG=1")
            self._last = now
