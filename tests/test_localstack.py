"""The private servers of the test suite and the demo die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hailong.localstack import LocalStackError, XvfbServer

CHILD = """
import sys, time
from pathlib import Path
from hailong.localstack import InfluxServer, MosquittoServer, XvfbServer
root = Path(sys.argv[1])
mq = MosquittoServer(root / "mq").start()
influx = InfluxServer(root / "influx").start()
xvfb = XvfbServer(range(500, 600)).start()
print(mq.proc.pid, influx.proc.pid, xvfb.proc.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


@pytest.mark.timeout(90)
def test_a_killed_test_run_leaves_no_server_behind(tmp_path: Path) -> None:
    """SIGKILL the process that started a mosquitto, an influxd and an Xvfb: all end within seconds."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids), pids
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in pids if _alive(p)]
        assert not left, f"servers still running after their starter was killed: {left}"
    finally:
        child.kill()
        for p in pids if "pids" in locals() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_xvfb_takes_a_free_display_of_its_range_and_stops() -> None:
    first = XvfbServer(range(600, 700)).start()
    second = XvfbServer(range(600, 700)).start()
    try:
        n = int(first.display[1:])
        assert second.display != first.display and 600 <= n < 700
        assert Path(f"/tmp/.X11-unix/X{n}").exists() and first.proc is not None and _alive(first.proc.pid)
        with pytest.raises(LocalStackError, match=f"no free X display number between :{n} and :{n}"):
            XvfbServer(range(n, n + 1)).start()
    finally:
        first.stop()
        second.stop()
    assert first.proc is not None and first.proc.poll() is not None
