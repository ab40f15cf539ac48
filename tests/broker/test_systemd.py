"""sd_notify and the watchdog beat shared by the terminal and the ingest units."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from broker.kernel.systemd import Watchdog, sd_notify, watchdog_interval_s


def test_sd_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_sd_notify_sends_a_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "n.sock"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
        assert sd_notify("READY=1") is True
        assert sock.recv(64) == b"READY=1"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sd_notify("WATCHDOG=1") is False  # a vanished socket never raises


@pytest.mark.parametrize(("usec", "expected"), [("30000000", 15.0), ("", 10.0), ("0", 10.0), ("junk", 10.0)])
def test_interval_is_half_of_watchdog_sec(usec: str, expected: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval_s() == expected


def test_watchdog_beats_ready_then_every_interval() -> None:
    now = [100.0]
    sent: list[str] = []
    wd = Watchdog(5.0, clock=lambda: now[0], notify=lambda m: sent.append(m) or True)
    for t in (100.0, 101.0, 104.9, 105.0, 106.0, 110.5):
        now[0] = t
        wd.beat()
    assert sent == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]
