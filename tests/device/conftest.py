"""Device test fixtures: a private X server (Xvfb) for the Kivy UI tests, and the device tests' own broker."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hailong.localstack import MosquittoServer


def _free_display() -> int:
    for n in range(90, 190):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise RuntimeError("no free X display number between :90 and :189")


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """DISPLAY of an Xvfb started for this session (big enough for the 1280x720 layout)."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise RuntimeError("Xvfb not found: install it with `apt-get install xvfb`")
    n = _free_display()
    proc = subprocess.Popen([binary, f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"Xvfb :{n} did not start (exit {proc.poll()})")
        time.sleep(0.05)
    yield f":{n}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """The device tests' own broker (overrides the suite-wide one).

    Terminals publish a retained status and leave a retained "offline" last will on
    purpose; on a shared broker every later ingest test would receive those retained
    messages of devices its registry does not know (and reject them, correctly).
    """
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto-device")).start()
    yield server
    server.stop()
