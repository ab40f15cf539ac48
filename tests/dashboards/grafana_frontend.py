"""Grafana's frontend code in the loop: @grafana/data (npm, pinned) runs every panel's transformations
and field display, and this module hands it the frames and reads back what a person sees.

Reusable by any dashboard test::

    shown = show_panel(db, dashboard_json, panel_json, TimeRange(start, end), now_ms, {"centre": ["c-ba"]})
    shown.text[0]["Tỷ lệ hài lòng"]   # "89.7%", as the table panel prints it
    shown.stat                        # ["89.7%"] for a stat panel ("Không có dữ liệu" when empty)

or, with frames of your own (no InfluxDB): ``render_panel(dashboard_json, panel_json, frames)``.

The Node program (grafana_js/render.js) runs as one long-lived process per test session; its
packages are installed by ``npm ci`` from grafana_js/package-lock.json (:func:`ensure_installed`,
called by the dashboard tests' session fixture and by ``make test``), never at import time.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.influxql import InfluxQL

from .grafana_backend import Frame, Row, TimeRange, query_frames

JS_DIR = Path(__file__).with_name("grafana_js")
LOCK = JS_DIR / "package-lock.json"
INSTALLED = JS_DIR / "node_modules" / ".package-lock.json"  # written by npm ci


def ensure_installed() -> None:
    """``npm ci`` when node_modules is missing or older than the lock file (Debian's nodejs and npm)."""
    if INSTALLED.exists() and INSTALLED.stat().st_mtime >= LOCK.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Debian's nodejs and npm (scripts/install-system-deps.sh)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True)


class _Node:
    """One render.js process: a JSON request per line in, a JSON answer per line out."""

    def __init__(self) -> None:
        if not INSTALLED.exists():
            raise RuntimeError(f"{JS_DIR}/node_modules missing: run `make js` (npm ci in {JS_DIR})")
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise RuntimeError("node not found: install Debian's nodejs (scripts/install-system-deps.sh)")
        # the viewer's browser runs on UTC, whatever this machine's zone: what is not pinned to the
        # dashboard's zone shows up as shifted hours in the tests
        env = {**os.environ, "TZ": "UTC"}
        self.proc = subprocess.Popen([node, str(JS_DIR / "render.js")], cwd=JS_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1, env=env)
        self.lock = threading.Lock()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps(request, allow_nan=False, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"render.js exited with {self.proc.poll()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"@grafana/data failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_node: _Node | None = None


def _frontend() -> _Node:
    global _node
    if _node is None or _node.proc.poll() is not None:
        _node = _Node()
        atexit.register(_node.close)
    return _node


def _decode(v: Any) -> Any:
    """JavaScript values JSON cannot carry: undefined -> None, NaN/±Infinity -> float."""
    if isinstance(v, dict) and "$js" in v:
        return None if v["$js"] == "undefined" else float(v["$js"].replace("Infinity", "inf"))
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


@dataclass
class Shown:
    """A panel as Grafana displays it: the first frame's columns, raw values and displayed text."""

    columns: list[str]
    rows: list[Row]  # raw values after the transformations (undefined -> None, NaN as float nan)
    text: list[dict[str, str]]  # what the table prints in each cell
    stat: list[str] = field(default_factory=list)  # what a stat panel prints (one per value shown)
    frames: list[dict[str, Any]] = field(default_factory=list)  # every output frame, as returned

    def col(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]

    def rows_by(self, *cols: str) -> dict[tuple[Any, ...], int]:
        """Row index per key; a duplicate key fails."""
        out = {tuple(r[c] for c in cols): i for i, r in enumerate(self.rows)}
        assert len(out) == len(self.rows), "one row per group"
        return out


def render_panel(dashboard: Row, panel: Row, frames: list[Frame]) -> Shown:
    """The panel's transformations and field display by @grafana/data, in the dashboard's time zone."""
    answer = _frontend().ask({"op": "panel", "dashboard": {"timezone": dashboard.get("timezone", "browser"),
                                                           "weekStart": dashboard.get("weekStart", "")},
                              "panel": {k: panel.get(k) for k in ("type", "fieldConfig", "options", "transformations")},
                              "frames": frames})
    out = answer["frames"]
    first = out[0]["fields"] if out else []
    n = len(first[0]["values"]) if first else 0
    columns = [f["name"] for f in first]
    rows = [{f["name"]: _decode(f["values"][i]) for f in first} for i in range(n)]
    text = [{f["name"]: f["text"][i] for f in first} for i in range(n)]
    return Shown(columns, rows, text, answer.get("stat", []), out)


def panel_range(panel: Row, dashboard: Row, rng: TimeRange, now_ms: int) -> TimeRange:
    """A panel's relative time (timeFrom "now/d", "now/w", "7d") by @grafana/data's dateMath in the
    dashboard's zone and week start; the dashboard's range when the panel has none."""
    rel = panel.get("timeFrom")
    if not rel:
        return rng
    answer = _frontend().ask({"op": "range", "from": rel, "to": "now", "now": now_ms,
                              "timezone": dashboard["timezone"], "weekStart": dashboard.get("weekStart", "")})
    return TimeRange(int(answer["from"]), min(int(answer["to"]), now_ms))


def show_panel(db: InfluxQL, dashboard: Row, panel: Row, rng: TimeRange, now_ms: int,
               selection: dict[str, list[str] | None] | None = None, interval_ms: int = 60_000) -> Shown:
    """Everything Grafana does for one panel: queries on InfluxDB, then Grafana's frontend code."""
    prng = panel_range(panel, dashboard, rng, now_ms)
    return render_panel(dashboard, panel, query_frames(db, dashboard, panel, prng, selection or {}, interval_ms))


def is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)
