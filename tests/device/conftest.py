"""Device test fixtures: a private X server (Xvfb) for the Kivy UI tests, and the device tests' own broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hailong.localstack import MosquittoServer, XvfbServer


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """DISPLAY of an Xvfb started for this session (big enough for the 1280x720 layout)."""
    server = XvfbServer(range(90, 190)).start()
    yield server.display
    server.stop()


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
