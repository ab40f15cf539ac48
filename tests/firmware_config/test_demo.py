"""`hailong demo` (the README's first command) runs the whole system and reports what landed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path


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
    counts = [int(n) for n in re.findall(r"^ttphcc-\S+\s+.+?\s+(\d+)$", out, flags=re.M)]
    assert sum(counts) == 24
    assert re.search(r"satisfaction ratio \d+\.\d%", out)
    # the demo's private servers are stopped afterwards: their ports refuse connections
    ports = re.search(r"broker mqtt://127.0.0.1:(\d+)\s+influxdb http://127.0.0.1:(\d+)", out)
    assert ports, out
    for port in ports.groups():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open"
