"""One ``hailong ingest run`` using every core: a supervisor and N worker processes.

Python judges and encodes ratings on one core per process (the GIL), so the ingest scales
by processes. The supervisor is the process systemd starts and watches; it:

- starts N workers, each an ordinary ``python -m ingest.cli run --config FILE`` process,
  given its identity through the same env overrides an operator would use
  (``HAILONG_INGEST__MQTT__USERNAME``, ``__CLIENT_ID``, ``__INTEGRITY__PARTITION__INDEX``/
  ``__COUNT``), so a worker is exactly a single-process ingest with a partition, nothing
  more. Worker k > 0 logs in as ``<user>.w<k>`` with the instance's password: the broker
  forces client id = username, so each worker needs its own user to keep its own
  persistent session (``hailong broker render`` creates them: ``ingest_workers``);
- gives them a private sd_notify socket: workers send the READY=1 / WATCHDOG=1 they would
  send to systemd to the supervisor instead, which sends READY=1 to systemd once every
  worker is ready and WATCHDOG=1 only while every worker's watchdog is fresh;
- restarts a worker that exits or whose watchdog goes stale (SIGKILL, then start again with
  a growing delay); its un-acked messages stay in its persistent broker session and are
  redelivered to its successor, which has the same client id;
- forwards SIGTERM/SIGINT (flush, ack, disconnect: each worker's own stop path) and SIGHUP
  (registry reload) to every worker;
- serves ``/healthz`` for the whole group: 200 only when every worker is alive.

Partitioning (ingest/partition.py) sends every ticket's ratings and its counter's QMS
events to one worker, so duplicate_ticket holds across workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.identities import worker_user
from broker.kernel.systemd import sd_notify

from .health import HealthServer

log = logging.getLogger("hailong.ingest.workers")

WORKER_WATCHDOG_S = 10.0  # workers ping every 5 s (half of it); stale after STALE_FACTOR x this
STALE_FACTOR = 3.0
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
PR_SET_PDEATHSIG = 1


def auto_workers() -> int:
    """One worker per core the process may run on (cgroup/affinity aware), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(value: int | str) -> int:
    """``workers`` of ingest.toml (validated there: "auto" or an int >= 1) as a number."""
    return auto_workers() if value == "auto" else int(value)


def worker_client_id(base: str, index: int) -> str:
    """Stable and distinct per worker; worker 0 keeps the configured id (broker.identities.worker_user)."""
    return worker_user(base, index)


def worker_env(base_client_id: str, username: str | None, index: int, count: int,
               notify_socket: str) -> dict[str, str]:
    """The env overrides that make a plain ingest process worker ``index`` of ``count``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if username:
        env["HAILONG_INGEST__MQTT__USERNAME"] = worker_user(username, index)
    env.update({
        "HAILONG_INGEST__CLIENT_ID": worker_client_id(base_client_id, index),
        "HAILONG_INGEST__INTEGRITY__PARTITION__INDEX": str(index),
        "HAILONG_INGEST__INTEGRITY__PARTITION__COUNT": str(count),
        "HAILONG_INGEST__WORKERS": "1",  # a worker is a plain single-process ingest
        # the group's /healthz is the supervisor's; a worker's own one is on an ephemeral port
        "HAILONG_INGEST__HEALTH__HTTP_PORT": "0",
        "NOTIFY_SOCKET": notify_socket,
        "WATCHDOG_USEC": str(int(WORKER_WATCHDOG_S * 1_000_000)),
    })
    return env


def _die_with_parent(parent: int) -> Callable[[], None]:
    """In the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL (Linux prctl)."""

    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - not Linux
            return
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


@dataclass
class Worker:
    index: int
    client_id: str
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    last_beat: float = 0.0
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0

    def fresh(self, now: float) -> bool:
        """Running and its watchdog recent (a worker that never became ready counts from its start)."""
        return self.proc is not None and now - self.last_beat <= WORKER_WATCHDOG_S * STALE_FACTOR


class Supervisor:
    """Start, watch, restart and stop N ingest workers (see the module docstring)."""

    def __init__(self, config_path: Path, count: int, base_client_id: str, username: str | None,
                 health_port: int | None, python: str = sys.executable) -> None:
        self.config_path = config_path
        self.count = count
        self.base_client_id = base_client_id
        self.username = username
        self.python = python
        self.workers = [Worker(i, worker_client_id(base_client_id, i)) for i in range(count)]
        self._dir = tempfile.mkdtemp(prefix="hailong-ingest-")
        self._notify_path = str(Path(self._dir) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._notify_path)
        # the kernel attaches each sender's pid (SCM_CREDENTIALS): that is how we know which worker spoke
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._stop = threading.Event()
        self._ready_sent = False
        self._last_watchdog = 0.0
        self._health = HealthServer(health_port, self.health) if health_port is not None else None

    # ------------------------------------------------------------------ workers

    def _spawn(self, w: Worker) -> None:
        env = worker_env(self.base_client_id, self.username, w.index, self.count, self._notify_path)
        cmd = [self.python, "-m", "ingest.cli", "run", "--config", str(self.config_path)]
        w.proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent(os.getpid()))
        w.ready, w.started, w.last_beat = False, time.monotonic(), time.monotonic()
        log.info("worker %d started (pid %d, client id %s)", w.index, w.proc.pid, w.client_id)

    def _receive_notifications(self) -> None:
        """Read every pending sd_notify datagram; the first read waits up to the socket timeout."""
        while True:
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
            except (TimeoutError, BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            finally:
                self._sock.settimeout(0)
            pid = next((struct.unpack("3i", d[:12])[0] for level, kind, d in ancdata
                        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS), None)
            w = next((w for w in self.workers if w.proc is not None and w.proc.pid == pid), None)
            if w is None:
                continue  # a worker that was already replaced, or not one of ours
            lines = data.decode("ascii", "replace").splitlines()
            now = time.monotonic()
            if "READY=1" in lines:
                w.ready = True
                w.last_beat = now
            if "WATCHDOG=1" in lines:
                w.last_beat = now

    def _check(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.proc is None:
                if now >= w.next_start:
                    self._spawn(w)
                continue
            code = w.proc.poll()
            stale = w.ready and not w.fresh(now)
            never_ready = not w.ready and now - w.started > 120
            if code is None and (stale or never_ready):
                log.error("worker %d (pid %d) %s: killing it", w.index, w.proc.pid,
                          "stopped pinging its watchdog" if stale else "never became ready")
                w.proc.kill()
                code = w.proc.wait()
            if code is not None:
                w.restarts += 1
                delay = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** min(w.restarts - 1, 5))
                if now - w.started > 60:  # it ran a while: not a crash loop
                    delay = RESTART_MIN_S
                log.error("worker %d exited with %s; restarting in %.0fs", w.index, code, delay)
                w.proc, w.ready, w.next_start = None, False, now + delay

    def _notify_systemd(self) -> None:
        now = time.monotonic()
        all_ready = all(w.ready for w in self.workers)
        if all_ready and not self._ready_sent:
            sd_notify("READY=1")
            self._ready_sent = True
            log.info("all %d workers ready", self.count)
        if all(w.fresh(now) for w in self.workers) and now - self._last_watchdog >= 5.0:
            sd_notify("WATCHDOG=1")
            self._last_watchdog = now

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        workers = [{
            "index": w.index, "client_id": w.client_id, "pid": w.proc.pid if w.proc else None,
            "ready": w.ready, "beat_age_s": round(now - w.last_beat, 3), "restarts": w.restarts,
        } for w in self.workers]
        alive = all(w.ready and w.fresh(now) for w in self.workers)
        return {"alive": alive and not self._stop.is_set(), "workers": workers}

    # ------------------------------------------------------------------ lifecycle

    def signal_all(self, sig: int) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Supervise until request_stop(); then SIGTERM every worker and wait for their flush."""
        if self._health is not None:
            self._health.start()
        for w in self.workers:
            self._spawn(w)
        try:
            while not self._stop.is_set():
                self._sock.settimeout(0.2)
                self._receive_notifications()
                self._check()
                self._notify_systemd()
        finally:
            sd_notify("STOPPING=1")
            self.signal_all(signal.SIGTERM)
            deadline = time.monotonic() + 60
            for w in self.workers:
                if w.proc is None:
                    continue
                try:
                    w.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("worker %d did not stop in time; killing it (its messages stay un-acked)", w.index)
                    w.proc.kill()
                    w.proc.wait()
            if self._health is not None:
                self._health.stop()
            self._sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self._notify_path)
                os.rmdir(self._dir)
        return 0
