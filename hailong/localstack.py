"""Run a private Mosquitto and InfluxDB 1.x from the Debian packages, and a private X server (Xvfb).

Used by the test suite (session-scoped fixtures), the benchmarks and ``hailong demo``. Every
server lives in its own state directory, listens only on 127.0.0.1 on a free
port, and is never the system service: nothing under /etc or /var is touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from broker.fleet.passwd import hash_password, render_passwd
from broker.fleet.pki import write_private
from broker.identities import worker_user

MOSQUITTO_BIN = os.environ.get("HAILONG_MOSQUITTO", "mosquitto")
DEV_INGEST_WORKERS = 8  # the development user's ingest worker users (<user>.w1 ...), as a rendered broker has
INFLUXD_BIN = os.environ.get("HAILONG_INFLUXD", "influxd")


class LocalStackError(RuntimeError):
    """A local server could not be started; the message says what to install or read."""


# Private servers listen below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 on
# Debian): a port from that range, freed while a fault test has its server stopped, is soon taken as the
# local port of some outgoing connection, and the restart on the same port fails "address in use".
_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A free 127.0.0.1 port outside the ephemeral range (any free port if none is found quickly)."""
    for _ in range(200):
        port = secrets.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        # /usr/sbin is not always on a non-root PATH; Debian puts mosquitto there.
        for d in ("/usr/sbin", "/usr/bin", "/sbin"):
            if Path(d, binary).exists():
                return str(Path(d, binary))
        raise LocalStackError(f"{binary} not found: install it with `apt-get install {package}`")
    return path


def _owned(argv: list[str]) -> list[str]:
    """``argv`` run so that the server gets SIGTERM when the process that started it dies.

    A test run killed with SIGKILL (or a crashed demo) otherwise leaves its private mosquitto and
    influxd running, each holding a port and a state directory. ``setpriv`` (util-linux, on every
    Debian) sets the parent-death signal and execs the server, so the pid stays the server's. The
    kernel sends that signal when the *thread* that forked exits, so it is only set from the main
    thread: a server restarted from a short-lived helper thread (fault tests) must outlive it.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalStackError(f"{what} exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        if check():
            return
        time.sleep(0.05)
    raise LocalStackError(f"{what} not ready after {timeout:.0f}s; log {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (SIGTERM: flush, ack, exit), wait ``timeout`` for a clean exit, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- Mosquitto

@dataclass
class MosquittoServer:
    """A Mosquitto 2.x broker in ``workdir``.

    By default it gets a development config: password authentication (no
    anonymous access), one user with full access (plus that user's ingest worker
    users, ``<user>.w1`` ... with the same password, as ``hailong broker render``
    makes them), persistence on. Pass
    ``conf_text`` to run a config rendered by ``hailong broker render`` instead;
    the literal ``{port}`` and ``{workdir}`` in it are substituted.
    """

    workdir: Path
    port: int = 0
    conf_text: str | None = None
    username: str = "hailong-dev"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def default_conf(self) -> str:
        return "\n".join(
            [
                "listener {port} 127.0.0.1",
                # Started as root (CI, containers) mosquitto would drop to the
                # `mosquitto` user, which cannot enter private 0700 temp dirs.
                *(["user root"] if os.geteuid() == 0 else []),
                "allow_anonymous false",
                f"password_file {self.workdir}/passwd",
                "persistence true",
                f"persistence_location {self.workdir}/data/",
                "autosave_interval 30",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "connection_messages true",
                # Offline persistent sessions (ingest restarting) must not drop
                # QoS1 ratings: the default cap is 1000 queued messages.
                "max_queued_messages 0",
                "max_queued_bytes 0",
                "max_inflight_messages 0",
                "set_tcp_nodelay true",
                "",
            ]
        )

    def start(self, timeout: float = 15) -> MosquittoServer:
        binary = _require(MOSQUITTO_BIN, "mosquitto")
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.conf_text is None:
            passwd = self.workdir / "passwd"
            if not passwd.exists():
                hashed = hash_password(self.password)
                users = {worker_user(self.username, k): hashed for k in range(DEV_INGEST_WORKERS)}
                write_private(passwd, render_passwd(users).encode())
            text = self.default_conf()
        else:
            text = self.conf_text
        self.conf_path.write_text(text.replace("{port}", str(self.port)).replace("{workdir}", str(self.workdir)))
        self.conf_path.chmod(0o600)
        log_fh = open(self.workdir / "mosquitto.stdout", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            _owned([binary, "-c", str(self.conf_path)]), stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait(lambda: _port_open(self.port), "mosquitto", self.proc, self.log_path, timeout)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return _tail(self.log_path, 200) + "\n" + _tail(self.workdir / "mosquitto.stdout", 50)


# --------------------------------------------------------------------------- InfluxDB 1.x

@dataclass
class InfluxServer:
    """InfluxDB 1.x (Debian's 1.6.7) in ``workdir``; HTTP API on 127.0.0.1:``port``.

    ``auth=True`` turns on ``auth-enabled`` as deploy/ does: until the first admin user is
    created (``CREATE USER ... WITH ALL PRIVILEGES``, allowed without credentials while no
    user exists) every other query is refused.

    ``cq_run_interval`` is ``[continuous_queries] run-interval``: how often the CQ service looks
    for a CQ that is due (InfluxDB's default 1s, counted from the end of the previous round).
    A CQ with ``RESAMPLE EVERY 1s`` is due at each whole second, so "100ms" makes its next run
    start at the next whole second (plus the CQs before it in that round) instead of up to a
    whole interval later. ``cq_log`` logs every CQ execution (window, points written, duration).
    """

    workdir: Path
    port: int = 0
    rpc_port: int = 0
    auth: bool = False
    cq_run_interval: str = "1s"
    cq_log: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "influxd.log"

    def conf(self) -> str:
        d = self.workdir
        return f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
  wal-fsync-delay = "0s"
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = true
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  max-body-size = 50000000
[subscriber]
  enabled = false
[continuous_queries]
  enabled = true
  run-interval = "{self.cq_run_interval}"
  log-enabled = {"true" if self.cq_log else "false"}
"""

    def start(self, timeout: float = 30) -> InfluxServer:
        binary = _require(INFLUXD_BIN, "influxdb")
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if not self.rpc_port:
            self.rpc_port = free_port()
        conf = self.workdir / "influxdb.conf"
        conf.write_text(self.conf())
        log_fh = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            _owned([binary, "-config", str(conf)]), stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait(self.ping, "influxd", self.proc, self.log_path, timeout)
        return self

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=0.5) as r:
                return int(r.status) == 204
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return _tail(self.log_path, 200)


# --------------------------------------------------------------------------- Xvfb

@dataclass
class XvfbServer:
    """A private X server for the Kivy terminal (the UI tests, the device benchmarks); its screen
    holds the 1280x720 layout. ``display`` (":N") is set once started.

    ``displays``: the numbers it may take, the first free one (no lock file, no socket). The tests and
    each benchmark have their own range, so runs side by side do not race for one number."""

    displays: range = range(90, 190)
    screen: str = "1280x800x24"
    display: str = field(default="", init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self, timeout: float = 10) -> XvfbServer:
        binary = _require("Xvfb", "xvfb")
        n = next((n for n in self.displays if not Path(f"/tmp/.X{n}-lock").exists()
                  and not Path(f"/tmp/.X11-unix/X{n}").exists()), None)
        if n is None:
            raise LocalStackError(f"no free X display number between :{self.displays[0]} and :{self.displays[-1]}")
        self.proc = subprocess.Popen(_owned([binary, f":{n}", "-screen", "0", self.screen, "-nolisten", "tcp"]),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop_process(self.proc, 5)
                raise LocalStackError(f"Xvfb :{n} did not start (exit {self.proc.poll()})")
            time.sleep(0.05)
        self.display = f":{n}"
        return self

    def stop(self, *, wait: bool = True) -> None:
        """SIGTERM; ``wait=False`` for a process whose own Kivy window is on it: Xlib exits the process
        when its server goes away, so that is the last thing it does."""
        if wait:
            stop_process(self.proc, 5)
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
