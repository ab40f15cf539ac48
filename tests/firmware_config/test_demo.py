"""`hailong demo` (the README's first command) runs the whole system and reports what landed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.device.conftest import xvfb  # noqa: F401 - the session's Xvfb, for the terminal window

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_prints_the_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run(
        [sys.executable, "-m", "hailong.cli", "demo", "--state-dir", str(tmp_path / "demo"),
         "--ratings", "6", "--counters", "2", "--interval", "0"],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no display" in out
    # 2 centres x 2 counters x 6 citizens, every one stored, none rejected by the registry checks
    assert "published 24, stored 24" in out
    assert "rejected[none]" in out
    # the director's summary: plain words, per centre, then what to do next
    assert "2 centres, 4 counters: 24 citizens rated the service, 24 ratings were received and stored." in out
    counts = [int(n) for n in re.findall(r"^  Trung tâm .+?: (\d+) ratings \(Rất hài lòng", out, flags=re.M)]
    assert len(counts) == 2 and sum(counts) == 24
    assert re.search(r"^Overall \d+\.\d% of citizens were satisfied", out, flags=re.M)
    assert "766" not in out.split("technical details")[0]
    nxt = out.split("Next steps:")[1]
    # its servers stop after the summary: the only command offered is the run that keeps them
    assert re.findall(r"`([^`]+)`", out) == ["make demo DEMO_ARGS=--keep"]
    assert "Grafana dashboards are not part" in nxt
    assert str(tmp_path / "demo" / "influxdb") in nxt
    # no warning (e.g. a client id other than the broker username) and nothing else on stderr
    assert "WARNING" not in proc.stderr and "differs from" not in proc.stderr, proc.stderr
    # the demo's private servers are stopped afterwards: their ports refuse connections
    ports = re.search(r"broker mqtt://127.0.0.1:(\d+)\s+influxdb http://127.0.0.1:(\d+)", out)
    assert ports, out
    for port in ports.groups():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open"


def _descendants(pid: int) -> set[int]:
    children: dict[int, set[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), set()).add(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), set()):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_demo_stops_everything_on_signal(sig: signal.Signals, tmp_path: Path, xvfb: str) -> None:  # noqa: F811
    """Ctrl-C, `kill`, or the terminal/SSH session closing: no mosquitto, influxd or window left behind."""
    env = os.environ | {"DISPLAY": xvfb}
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hailong.cli", "demo", "--state-dir", str(tmp_path / "demo"), "--ratings", "2",
             "--counters", "1", "--interval", "0", "--keep"],
            stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while "press Ctrl-C to stop" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "demo did not reach its running state:\n" + log.read_text()
            time.sleep(0.2)
        children = _descendants(proc.pid)
        names = {Path(f"/proc/{c}/comm").read_text().strip() for c in children if _alive(c)}
        assert {"mosquitto", "influxd"} <= names, names
        assert any(n.startswith("python") for n in names), f"no terminal window process: {names}"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert "nothing is left running" in text, text
    left = [c for c in children if _alive(c)]
    for c in left:  # never leave them to the next test, but fail
        os.kill(c, signal.SIGKILL)
    assert not left, f"{signal.Signals(sig).name} left processes running: {left}"


@pytest.mark.timeout(300)
def test_make_demo_prints_little_before_the_demo_and_every_hint_runs_as_printed() -> None:
    """What the README tells a new user: `make demo` from the repository root (the packages are
    installed here already), then `make demo DEMO_ARGS=--keep` as its summary suggests, then every
    command that one prints, exactly as printed, from the repository root in another shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"  # a new shell: no venv on PATH
    first = subprocess.run(["make", "demo", "DEMO_ARGS=--ratings 2 --counters 1 --interval 0"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stdout + first.stderr
    before = first.stdout.split("starting Mosquitto")[0].splitlines()
    assert len(before) < 40, before
    assert any(line.startswith("system packages for 'demo'") for line in before), before
    assert "WARNING" not in first.stderr, first.stderr
    hints = re.findall(r"`([^`]+)`", first.stdout)
    assert hints == ["make demo DEMO_ARGS=--keep"], first.stdout
    log = ROOT / ".hailong" / "test-demo-keep.out"
    with open(log, "wb") as out:
        keep = subprocess.Popen(hints[0].split(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "press Ctrl-C to stop" not in log.read_text(errors="replace"):
            assert keep.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        commands = re.findall(r"`([^`]+)`", text)
        assert commands and commands[0].startswith(".venv/bin/hailong report weekly"), text
        for command in commands:
            ran = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120, stdin=subprocess.DEVNULL)
            assert ran.returncode == 0, f"{command}\n{ran.stdout}{ran.stderr}"
            if " report weekly " in command:  # the scorecard it names exists and is a PDF
                pdf = next(line for line in ran.stdout.splitlines() if line.endswith(".pdf"))
                assert (ROOT / pdf).read_bytes().startswith(b"%PDF")
    finally:
        if keep.poll() is None:
            os.killpg(keep.pid, signal.SIGINT)  # Ctrl-C in that window: make and the demo
            keep.wait(timeout=60)
    assert "nothing is left running" in log.read_text(errors="replace")
