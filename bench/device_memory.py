"""Benchmark: the terminal's memory, with and without the GL driver's mappings.

    python bench/device_memory.py [--settle 8]              # smaps only
    python bench/device_memory.py --heaptrack [--settle 8]  # + the GL driver's heap (apt-get install heaptrack)

Starts its own Xvfb (unless DISPLAY is set) and a private Mosquitto, runs the real
``hailong device run --config`` process and takes it through every screen a citizen meets:
out of service, an officer logs in (IDLE), a ticket closes (PROMPT), a tap on "Không hài
lòng" (REASONS), a tap on "Bỏ qua" (THANKS; the rating must reach the broker, so the taps
are known to have landed), back to IDLE, and a second ticket's PROMPT. The taps are real X
pointer events (XTest, libXtst) on the window at the screen's top-left corner. It lets the
PROMPT settle, then reads /proc/PID/smaps and sums each mapping's Rss by what it is:

- gl_driver: the GL stack the platform brings (Mesa's libLLVM, *_dri.so / libgallium /
  swrast, libGL/libGLX/libEGL/libglapi, libdrm and their LLVM helpers). On a Pi the vc4/v3d
  driver takes this place; it is not the terminal's to cut.
- python: the interpreter, its stdlib and site-packages extension modules, .pyc files.
- sdl_and_libs: SDL2 and every other shared library (fonts, images, X11, libc, sqlite).
- anonymous: heap and anonymous mappings (Python objects, Kivy textures in RAM, malloc arenas),
  stack, [heap]. llvmpipe's JIT code lives here too, so this slightly overstates the
  terminal's own share in this VM.

"own_mb_excluding_gl_mappings" = total Rss - gl_driver mappings. The driver also allocates
on the process heap (Mesa/llvmpipe: the GL context, shader variants JIT-compiled on the first
draw of each screen, texture storage), which smaps counts as "anonymous". ``--heaptrack`` runs
the terminal under heaptrack, reads smaps at the same moment, SIGKILLs it there (so what
heaptrack reports as not freed is what was live at that moment) and attributes every live
allocation to the GL driver when its call stack below the last Python/Cython frame passes
through the GL stack (SDL_GL_*, glX*, gl* entry points, or code in libLLVM, *_dri.so,
libgallium, libGLX/libGL/libEGL, resolved through /proc/PID/maps taken at the same moment).
"own_mb_excluding_gl_driver" = own_mb_excluding_gl_mappings - that heap. heaptrack counts
bytes allocated, not pages touched: the figure is an estimate of the driver's resident heap.
Also prints the top mappings. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "device-memory"

# file mappings that belong to the GL driver (Mesa on x86 and on Raspberry Pi OS)
GL_DRIVER = re.compile(r"libLLVM|_dri\.so|libgallium|swrast|llvmpipe|libGLX?(_mesa)?\.so|libGLdispatch|libEGL|"
                       r"libglapi|libgbm|libdrm|libvulkan|libxcb-(dri|glx|present|sync)|libz3|libedit|"
                       r"libsensors|libelf|libxshmfence|libwayland")


def classify(path: str) -> str:
    if not path or path.startswith("["):
        return "anonymous"
    if GL_DRIVER.search(path):
        return "gl_driver"
    if "python3" in path or "site-packages" in path or path.endswith(".pyc"):
        return "python"
    return "sdl_and_libs"


def smaps(pid: int) -> list[tuple[str, int]]:
    """(mapping path, Rss kB) for every mapping of ``pid``."""
    out: list[tuple[str, int]] = []
    path = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            path = head[5] if len(head) > 5 else ""
        elif head[0] == "Rss:":
            out.append((path, int(head[1])))
    return out


def breakdown(pid: int) -> dict[str, object]:
    by_kind: dict[str, int] = defaultdict(int)
    by_path: dict[str, int] = defaultdict(int)
    for path, kb in smaps(pid):
        by_kind[classify(path)] += kb
        by_path[path or "[anon]"] += kb
    total = sum(by_kind.values())
    mb = {k: round(v / 1024, 1) for k, v in sorted(by_kind.items())}
    top = sorted(by_path.items(), key=lambda kv: -kv[1])[:8]
    return {"rss_mb": round(total / 1024, 1),
            "own_mb_excluding_gl_mappings": round((total - by_kind["gl_driver"]) / 1024, 1),
            "by_kind_mb": mb,
            "extension_modules": sum(1 for p in by_path if p.endswith(".so") and "site-packages" in p),
            "top_mappings_mb": [(Path(p).name if p.startswith("/") else p, round(kb / 1024, 1)) for p, kb in top]}


GL_CALLS = re.compile(r"SDL_GL_|X11_GL_|glX|^gl[A-Z]")
SDL_CALLS = re.compile(r"SDL|TTF_|FT_|hb_|libfreetype|libharfbuzz|libpng")
PYTHON_FRAME = ("_PyEval", "__pyx", "_Py", "Py")


def heap_by_owner(stacks: Path, maps: list[tuple[int, int, str]]) -> dict[str, float]:
    """MB of live heap per owner (gl_driver, sdl_and_fonts, python_and_rest) from heaptrack's
    collapsed stacks (root first, one ``frame;frame;... bytes`` per line)."""
    starts = [m[0] for m in maps]

    def where(frame: str) -> str:
        if not re.fullmatch(r"0x[0-9a-f]+", frame):
            return frame
        addr = int(frame, 16)
        i = bisect.bisect_right(starts, addr) - 1
        return maps[i][2] if i >= 0 and maps[i][0] <= addr < maps[i][1] else frame

    owners: dict[str, int] = defaultdict(int)
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, cost = line.rpartition(" ")
        frames = stack.split(";")
        last_py = max((i for i, f in enumerate(frames) if f.startswith(PYTHON_FRAME)), default=-1)
        below = [where(f) for f in frames[last_py + 1:]]
        if any(GL_CALLS.search(f) or GL_DRIVER.search(f) for f in below):
            owners["gl_driver"] += int(cost)
        elif any(SDL_CALLS.search(f) for f in below):
            owners["sdl_and_fonts"] += int(cost)
        else:
            owners["python_and_rest"] += int(cost)
    return {k: round(v / 2**20, 1) for k, v in sorted(owners.items())}


def read_maps(pid: int) -> list[tuple[int, int, str]]:
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append((lo, hi, parts[5] if len(parts) > 5 else ""))
    return sorted(out)


def find_terminal(config: Path, timeout: float = 30) -> int:
    """The terminal's pid when heaptrack started it (its child): the python process running our config."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0] == sys.executable.encode() and str(config).encode() in argv:
                    return int(entry.name)
        time.sleep(0.2)
    raise SystemExit("terminal process not found under heaptrack")


class Pointer:
    """Real taps on the X display through XTest (what a touch panel's driver produces)."""

    def __init__(self, display: str) -> None:
        x11, self.xtst = ctypes.CDLL("libX11.so.6"), ctypes.CDLL("libXtst.so.6")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11 = x11
        self.dpy = ctypes.c_void_p(x11.XOpenDisplay(display.encode()))
        if not self.dpy:
            raise SystemExit("cannot open the X display for taps")

    def tap(self, x: int, y: int) -> None:
        self.xtst.XTestFakeMotionEvent(self.dpy, -1, x, y, 0)
        self.xtst.XTestFakeButtonEvent(self.dpy, 1, True, 0)
        self.xtst.XTestFakeButtonEvent(self.dpy, 1, False, 0)
        self.x11.XFlush(self.dpy)


def run_terminal(env: dict[str, str], settle: float, heaptrack: bool) -> dict[str, object]:
    """One terminal process through every screen; its memory at the second PROMPT."""
    from broker.contract import QmsEvent, qms_topic, rating_topic
    from broker.mqtt.session import MqttSession
    from broker.mqtt.settings import MqttSettings
    from hailong.localstack import MosquittoServer

    run_dir = OUT / ("heaptrack-run" if heaptrack else "smaps-run")
    run_dir.mkdir(parents=True)
    broker = MosquittoServer(run_dir / "mosquitto").start()
    cfg = run_dir / "device.toml"
    cfg.write_text(f"""
device_id = "mem-t01"
centre = "bench"
counter = "q01"
centre_name = "Trung tâm Phục vụ hành chính công"
counter_label = "Quầy 1"
fullscreen = false
prompt_timeout_s = 60
thanks_s = 1.0
[officer_names]
cb01 = "Nguyễn Thị Lan"
[outbox]
path = "{run_dir / 'outbox.sqlite3'}"
[mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
username = "{broker.username}"
""", encoding="utf-8")
    env = env | {"HAILONG_DEVICE__MQTT__PASSWORD": broker.password, "KIVY_HOME": str(run_dir / "kivy")}
    cmd = [sys.executable, "-m", "hailong.cli", "device", "run", "--config", str(cfg)]
    if heaptrack:
        cmd = ["heaptrack", "-o", str(run_dir / "heaptrack"), *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                                            "password": broker.password})
    ratings: list[bytes] = []
    qms = MqttSession(settings, "mem-qms", subscriptions=[(rating_topic("bench", "mem-t01"), 1)],
                      on_message=lambda m: ratings.append(bytes(m.payload))).start()

    def qms_event(kind: str, ticket: str | None = None) -> None:
        ev = QmsEvent(v=1, type=kind, counter="q01", officer="cb01", ticket=ticket,  # type: ignore[arg-type]
                      at=time.time_ns() // 1_000_000)
        qms.publish(qms_topic("bench", "q01"), ev.to_json(), qos=1).wait_for_publish(5)

    try:
        if not qms.wait_connected(10):
            raise SystemExit(f"could not connect to {settings.url}")
        pid = find_terminal(cfg) if heaptrack else proc.pid
        slow = 3 if heaptrack else 1  # heaptrack slows every allocation
        time.sleep(5 * slow)  # start-up: imports, window, connect
        pointer = Pointer(env["DISPLAY"])
        for kind, ticket in (("officer_login", None), ("ticket_called", "A-1"), ("ticket_closed", "A-1")):
            qms_event(kind, ticket)
        time.sleep(2 * slow)
        pointer.tap(692, 380)  # "Không hài lòng", the right-most of four tiles at 800x480
        time.sleep(1.5 * slow)
        pointer.tap(399, 420)  # "Bỏ qua", the middle button of the reasons screen
        deadline = time.monotonic() + 10 * slow
        while not ratings and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ratings:
            raise SystemExit("the taps did not produce a rating: is the window at the screen's top-left?")
        time.sleep(4 * slow)  # THANKS, IDLE, the terminal's heap trim at rest
        qms_event("ticket_called", "A-2")
        qms_event("ticket_closed", "A-2")
        time.sleep(settle)
        assert proc.poll() is None, "terminal exited"
        result: dict[str, object] = breakdown(pid)
        if heaptrack:
            maps = read_maps(pid)
            os.kill(pid, signal.SIGKILL)  # heaptrack's "not freed" is then what was live right now
            proc.wait(120)
            stacks = run_dir / "live-stacks.txt"
            subprocess.run(["heaptrack_print", str(next(run_dir.glob("heaptrack*.zst"))), "--flamegraph-cost-type",
                            "leaked", "-F", str(stacks)], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            result["live_heap_mb"] = heap_by_owner(stacks, maps)
        return result
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        qms.stop()
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settle", type=float, default=8.0, help="seconds on the PROMPT before reading smaps")
    ap.add_argument("--heaptrack", action="store_true",
                    help="a second run under heaptrack attributes the live heap to the GL driver")
    args = ap.parse_args()
    if args.heaptrack and shutil.which("heaptrack") is None:
        raise SystemExit("--heaptrack needs heaptrack: apt-get install heaptrack")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    from hailong.localstack import XvfbServer

    xvfb = None
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        xvfb = XvfbServer(range(400, 500)).start()
        env["DISPLAY"] = xvfb.display
    try:
        command = ["python", "bench/device_memory.py", f"--settle {args.settle:g}", *(["--heaptrack"] * args.heaptrack)]
        result: dict[str, object] = {"command": " ".join(command), "screen": "second prompt, every screen drawn",
                                     **run_terminal(env, args.settle, heaptrack=False)}
        if args.heaptrack:
            traced = run_terminal(env, args.settle, heaptrack=True)
            heap = traced["live_heap_mb"]
            assert isinstance(heap, dict)
            # the clean run's smaps minus the driver's heap as the traced run saw it (heaptrack's own
            # allocations inflate the traced run's RSS, so its smaps are not used for the figure)
            result["gl_driver_live_heap_mb"] = heap.get("gl_driver", 0.0)
            result["live_heap_mb_under_heaptrack"] = heap
            own = float(result["own_mb_excluding_gl_mappings"])  # type: ignore[arg-type]
            result["own_mb_excluding_gl_driver"] = round(own - float(heap.get("gl_driver", 0.0)), 1)
        print(json.dumps(result, indent=1, ensure_ascii=False), flush=True)
    finally:
        if xvfb is not None:
            xvfb.stop()


if __name__ == "__main__":
    main()
