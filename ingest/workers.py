"""One ``hailong ingest run`` using every core: a supervisor and N worker processes.

Python judges and encodes ratings on one core per process (the GIL), so the ingest scales
by processes. The supervisor is the process systemd starts and watches; it:

- starts N workers, each an ordinary ``python -m ingest.cli run --config FILE`` process,
  given its identity through the same env overrides an operator would use
  (``HAILONG_INGEST__MQTT__USERNAME``, ``__MQTT__PASSWORD_FILE``, ``__CLIENT_ID``,
  ``__INTEGRITY__PARTITION__WORKER_INDEX``/``__WORKER_COUNT``), so a worker is exactly a
  single-process ingest with a share of the instance's partition, nothing more (the
  instance's own ``partition = {index, count}`` is kept: global partition = instance x
  worker). Worker k > 0 logs in as ``<user>.w<k>`` with its own secret
  (``worker_secrets_dir``): the broker forces client id = username, so each worker needs its
  own user to keep its own persistent session (``hailong broker render`` creates them,
  ``ingest_workers``); more workers than users is refused at start, naming both settings;
- gives them a private sd_notify socket: workers send the READY=1 / WATCHDOG=1 they would
  send to systemd to the supervisor instead (with their MQTT state: a worker is ready only
  once connected and subscribed), which sends READY=1 to systemd once every worker is ready
  and WATCHDOG=1 only while every worker's watchdog is fresh and no worker's login is
  refused (a restart re-reads the secrets: the fix after a rotation);
- drains the persistent sessions of workers a lower count removed (ingest/retired.py): each
  such identity runs once more as a worker that owns no centres, stores what waited in its
  session, and then its session is ended, so nothing queues for a worker that never returns;
- restarts a worker that exits or whose watchdog goes stale (SIGKILL, then start again with
  a growing delay); its un-acked messages stay in its persistent broker session and are
  redelivered to its successor, which has the same client id;
- forwards SIGTERM/SIGINT (flush, ack, disconnect: each worker's own stop path) and SIGHUP
  (registry reload) to every worker;
- serves ``/healthz`` for the whole group: 200 only when every worker is alive, ready and
  logged in.

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
from broker.kernel.health import HealthServer
from broker.kernel.settings import ConfigError
from broker.kernel.systemd import sd_notify

from .config import IngestConfig
from .retired import RetiredSessions

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


def worker_password_file(cfg: IngestConfig, index: int) -> Path | None:
    """Worker ``index``'s own secret: ``<worker_secrets_dir>/<user>.password`` (worker 0: the instance's)."""
    if index == 0 or cfg.worker_secrets_dir is None or not cfg.mqtt.username:
        return None
    return cfg.worker_secrets_dir / f"{worker_user(cfg.mqtt.username, index)}.password"


def check_worker_users(cfg: IngestConfig, count: int, config_path: Path | None = None) -> None:
    """Refuse, naming the settings, to run more workers than there are worker users with a secret."""
    missing = [f for k in range(1, count) if (f := worker_password_file(cfg, k)) is not None and not f.is_file()]
    if missing:
        have = count - len(missing)
        raise ConfigError(config_path, "workers", (
            f"{cfg.workers!r} means {count} worker processes, but worker_secrets_dir {cfg.worker_secrets_dir} has "
            f"no {missing[0].name}: render {count} worker users (ingest_workers = {count} in the fleet's "
            f"broker.toml, then `hailong broker render`) and copy their secrets, or set workers = {have}"))


def worker_env(cfg: IngestConfig, index: int, count: int, notify_socket: str, *,
               drain: bool = False) -> dict[str, str]:
    """The env overrides that make a plain ingest process worker ``index`` of ``count`` (or a drainer)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    if cfg.mqtt.username:
        env["HAILONG_INGEST__MQTT__USERNAME"] = worker_user(cfg.mqtt.username, index)
    secret = worker_password_file(cfg, index)
    if secret is not None:  # its own secret: an inline (env) password would win over the file
        env.pop("HAILONG_INGEST__MQTT__PASSWORD", None)
        env["HAILONG_INGEST__MQTT__PASSWORD_FILE"] = str(secret)
    env.update({
        "HAILONG_INGEST__CLIENT_ID": worker_client_id(cfg.client_id, index),
        # the instance's own partition (index/count from its config) is kept: its share is dealt among workers
        "HAILONG_INGEST__INTEGRITY__PARTITION__WORKER_INDEX": str(index),
        "HAILONG_INGEST__INTEGRITY__PARTITION__WORKER_COUNT": str(count),
        "HAILONG_INGEST__INTEGRITY__PARTITION__DRAIN": "true" if drain else "false",
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
    mqtt: str = "connecting"  # its last HAILONG_MQTT= state: ready | connecting | refused
    last_beat: float = 0.0
    started: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    drain: bool = False  # a retired worker's identity, run once to store what waits in its session

    def fresh(self, now: float) -> bool:
        """Running and its watchdog recent (a worker that never became ready counts from its start)."""
        return self.proc is not None and now - self.last_beat <= WORKER_WATCHDOG_S * STALE_FACTOR


class Supervisor:
    """Start, watch, restart and stop N ingest workers (see the module docstring)."""

    def __init__(self, config_path: Path, cfg: IngestConfig, count: int, python: str = sys.executable) -> None:
        check_worker_users(cfg, count, config_path)
        self.config_path = config_path
        self.cfg = cfg
        self.count = count
        self.python = python
        self.workers = [Worker(i, worker_client_id(cfg.client_id, i)) for i in range(count)]
        self.retired = RetiredSessions(cfg, count, worker_password_file)
        health_port = cfg.health.http_port
        self._dir = tempfile.mkdtemp(prefix="hailong-ingest-")
        self._notify_path = str(Path(self._dir) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._notify_path)
        # the kernel attaches each sender's pid (SCM_CREDENTIALS): that is how we know which worker spoke
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._stop = threading.Event()
        self._ready_sent = False
        self._last_watchdog = 0.0
        self._last_refused_log = 0.0
        self._health = HealthServer(health_port, self.health) if health_port is not None else None

    # ------------------------------------------------------------------ workers

    def _spawn(self, w: Worker) -> None:
        env = worker_env(self.cfg, w.index, self.count, self._notify_path, drain=w.drain)
        cmd = [self.python, "-m", "ingest.cli", "run", "--config", str(self.config_path)]
        w.proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent(os.getpid()))
        w.ready, w.started, w.last_beat = False, time.monotonic(), time.monotonic()
        log.info("%s %d started (pid %d, client id %s)", "drainer" if w.drain else "worker", w.index, w.proc.pid,
                 w.client_id)

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
            for line in lines:
                if line.startswith("HAILONG_MQTT="):
                    w.mqtt = line.split("=", 1)[1]
            if "READY=1" in lines:  # a worker says it only once connected and subscribed (service._beat)
                w.ready = True
                w.last_beat = now
            if "WATCHDOG=1" in lines:
                w.last_beat = now

    def _check(self) -> None:
        now = time.monotonic()
        for index in self.retired.found():  # retired sessions the probe thread found
            self.workers.append(Worker(index, worker_client_id(self.cfg.client_id, index), drain=True))
        for w in list(self.workers):
            if w.proc is None:
                if now >= w.next_start:
                    self._spawn(w)
                continue
            code = w.proc.poll()
            if w.drain and code == 0:  # it stored what waited: end the session, nothing queues for it again
                self.workers.remove(w)
                # not on this loop: it would hold back the watchdog while the broker is away
                threading.Thread(target=self.retired.end, args=(w.index,), name="retired-end", daemon=True).start()
                continue
            stale = w.ready and not w.fresh(now)
            # a refused login is reported (not ready, /healthz 503), not "fixed" by restarting every 2 min
            never_ready = not w.ready and now - w.started > 120 and w.mqtt != "refused"
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

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers if not w.drain]

    def _notify_systemd(self) -> None:
        now = time.monotonic()
        serving = self._serving()
        all_ready = all(w.ready for w in serving)
        if all_ready and not self._ready_sent:
            sd_notify("READY=1")
            self._ready_sent = True
            log.info("all %d workers ready", self.count)
        refused = [w.index for w in serving if w.mqtt == "refused"]
        if refused and now - self._last_refused_log >= 60:
            self._last_refused_log = now
            log.error("the broker refuses the login of worker(s) %s: no WATCHDOG=1 until it accepts them "
                      "(check worker_secrets_dir and the rendered worker users)", refused)
        if all(w.fresh(now) for w in self.workers) and not refused and now - self._last_watchdog >= 5.0:
            sd_notify("WATCHDOG=1")
            self._last_watchdog = now

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        workers = [{
            "index": w.index, "client_id": w.client_id, "pid": w.proc.pid if w.proc else None,
            "ready": w.ready, "mqtt": w.mqtt, "beat_age_s": round(now - w.last_beat, 3), "restarts": w.restarts,
            **({"draining": True} if w.drain else {}),
        } for w in self.workers]
        # ready = connected and subscribed at least once; a login the broker now refuses is not alive either
        alive = all(w.ready and w.fresh(now) and w.mqtt != "refused" for w in self._serving())
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
        self.retired.start()  # looks for sessions of workers a lower count removed, in the background
        try:
            while not self._stop.is_set():
                self._sock.settimeout(0.2)
                self._receive_notifications()
                self._check()
                self._notify_systemd()
        finally:
            sd_notify("STOPPING=1")
            self.retired.stop()
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
