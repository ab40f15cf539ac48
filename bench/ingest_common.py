"""Shared parts of the ingest benchmarks (issue 14): fleet, rating payloads, publishers, the ingest
process, progress and the exactly-once check.

Ratings come from a :class:`RatingSpec`: message ``i`` is a pure function of (spec, i), so a
1,000,000-rating backlog is generated inside the publisher processes in chunks and checked
slice by slice against InfluxDB without ever holding the whole backlog in memory.

Own Mosquitto 2.0.11 and InfluxDB 1.6.7 (hailong.localstack) under bench/out/; loopback only.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from hailong.localstack import InfluxServer, MosquittoServer, stop_process
from ingest.config import IngestConfig
from ingest.workers import (
    resolve_workers,
    worker_client_id,
)
from storage.influxql import InfluxQL

OUT = Path(__file__).resolve().parent / "out"
NODERED = OUT / "nodered"
DAY_MS = 86_400_000
# rated_at of rating n of a device: base + n s. A base a week back (whole day) is inside the default
# clock.max_age_s (400 days) and outside the default ticket-index lookback (24 h), like a real backlog.
BASE_MS = (int(time.time() * 1000) // DAY_MS - 7) * DAY_MS
MIN_AVAILABLE_MB = 2048  # abort a run before the box runs out of memory
SLICE_N = 100  # exactly-once check: ratings n .. n+SLICE_N-1 of every device per InfluxDB query,
MAX_ROWS = 50_000  # ... and at most this many rows per answer


@dataclass
class Broker(MosquittoServer):
    """The localstack Mosquitto (as rendered: no queue cap, no inflight cap, nodelay) with overrides."""

    overrides: dict[str, str] | None = None

    def default_conf(self) -> str:
        lines = super().default_conf().splitlines()
        for key, value in (self.overrides or {}).items():
            lines = [f"{key} {value}" if ln.startswith(key + " ") else ln for ln in lines]
        return "\n".join(lines) + "\n"


def local_settings(port: int, user: str, pw: str) -> MqttSettings:
    return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{port}", "username": user, "password": pw})


def settings_for(broker: MosquittoServer) -> MqttSettings:
    return local_settings(broker.port, broker.username, broker.password)


def write_fleet(root: Path, centres: int, counters: int) -> list[tuple[str, str, str]]:
    """No-QMS centres (ticket ratings need no QMS events); returns (centre, device, counter)."""
    root.mkdir(parents=True, exist_ok=True)
    c_lines, d_lines, out = [], [], []
    for c in range(centres):
        cid = f"bc{c:03d}"
        c_lines += [f"[centre.{cid}]", 'name = "Trung tâm Phục vụ hành chính công"', 'province = "hue"',
                    "has_qms = false", ""]
        for q in range(counters):
            qid, did = f"q{q:03d}", f"bd{c:03d}-{q:03d}"
            c_lines += [f"[centre.{cid}.counter.{qid}]", f'label = "Quầy {q}"', ""]
            d_lines += [f"[device.{did}]", f'centre = "{cid}"', f'counter = "{qid}"', ""]
            out.append((cid, did, qid))
    (root / "centres.toml").write_text("\n".join(c_lines), encoding="utf-8")
    (root / "devices.toml").write_text("\n".join(d_lines), encoding="utf-8")
    (root / "officers.toml").write_text("", encoding="utf-8")
    return out


def rating_doc(centre: str, device: str, counter: str, n: int, event_id: str, rated_ms: int,
               ticket: str) -> dict[str, object]:
    """One terminal rating; the payload mix of the issue-14 baseline (4-level scale, all four scores)."""
    return {"v": 1, "event_id": event_id, "seq": n, "device": device, "centre": centre, "counter": counter,
            "officer": "cb1", "ticket": ticket, "service": "ho-tich", "dossier": None, "scale": 4,
            "score": 4 - n % 4, "reasons": [], "input": "touch", "closed_at": rated_ms - 900,
            "rated_at": rated_ms, "sent_at": rated_ms + 50, "boot_id": "bench", "mono_ms": n * 1000}


@dataclass(frozen=True)
class RatingSpec:
    """``per_device`` ratings from each of ``slots``; message i = rating i // len(slots) of slot i % len(slots)."""

    slots: tuple[tuple[str, str, str], ...]
    per_device: int
    seed: int  # 64 random bits: event ids differ between runs, and are recomputable from (seed, i)

    @classmethod
    def new(cls, slots: list[tuple[str, str, str]], per_device: int) -> RatingSpec:
        return cls(tuple(slots), per_device, uuid.uuid4().int >> 64)

    def __len__(self) -> int:
        return len(self.slots) * self.per_device

    def event_id(self, i: int) -> str:
        return str(uuid.UUID(int=(self.seed << 64) | i))

    def message(self, i: int) -> tuple[str, bytes]:
        n, s = divmod(i, len(self.slots))
        centre, device, counter = self.slots[s]
        doc = rating_doc(centre, device, counter, n, self.event_id(i), BASE_MS + n * 1000, f"A-{n}")
        return f"hl/v1/{centre}/{device}/rating", json.dumps(doc).encode()

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, bytes]]:
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.message(i)

    def ids_of_n(self, n0: int, n1: int) -> set[str]:
        """Event ids of ratings n0 <= n < n1 of every device (rated_at in [BASE+n0 s, BASE+n1 s))."""
        k = len(self.slots)
        return {self.event_id(i) for i in range(n0 * k, min(n1, self.per_device) * k)}


def ratings(slots: list[tuple[str, str, str]], per_device: int) -> list[tuple[str, bytes]]:
    """The whole backlog as a list (small runs; bench/ingest_cpu.py)."""
    return list(RatingSpec.new(slots, per_device).messages())


# --------------------------------------------------------------------------- publishers

def publish(settings: MqttSettings, msgs: list[tuple[str, bytes]] | Iterator[tuple[str, bytes]],
            clients: int = 4, chunk: int = 20_000) -> int:
    """Publish at QoS 1 from ``clients`` connections, ``chunk`` at a time, until the broker acked all.

    Message j goes to client j % clients; callers that need per-device order give each device a
    fixed client (see :func:`publish_spec`). Returns the number published."""
    pubs = []
    for i in range(clients):
        c = MqttSession(settings, f"bench-pub-{i}-{uuid.uuid4().hex[:6]}", max_inflight=1000).start()
        if not c.wait_connected(30):
            raise RuntimeError(f"bench publisher could not connect to {settings.url}")
        pubs.append(c)
    sent = 0
    it = iter(msgs)
    try:
        while True:  # paho mids are 16-bit per client: bound the un-acked publishes per client
            infos = []
            for topic, payload in it:
                infos.append(pubs[sent % clients].publish(topic, payload))
                sent += 1
                if len(infos) >= chunk:
                    break
            if not infos:
                return sent
            for info in infos:
                info.wait_for_publish(timeout=600)
                if not info.is_published():
                    raise RuntimeError(f"publish not acked by the broker within 600 s ({sent} sent)")
    finally:
        for c in pubs:
            c.stop()


def _publish_part(port: int, user: str, pw: str, spec: RatingSpec, part: int, parts: int, clients: int,
                  result: mp.Queue) -> None:
    k = len(spec.slots)
    # every device's ratings in order, from one client of one process (a terminal's outbox is FIFO)
    mine = (i for i in range(len(spec)) if (i % k) % parts == part)
    sent = publish(local_settings(port, user, pw), (spec.message(i) for i in mine), clients=clients)
    result.put(sent)


def publish_spec(broker: MosquittoServer, spec: RatingSpec, procs: int = 2, clients: int = 2,
                 timeout: float = 1800) -> float:
    """Publish the whole spec from ``procs`` processes (generated there, in chunks); return msgs/s."""
    q: mp.Queue = mp.Queue()
    t0 = time.monotonic()
    ps = [mp.Process(target=_publish_part, args=(broker.port, broker.username, broker.password, spec, p, procs,
                                                 clients, q)) for p in range(procs)]
    for p in ps:
        p.start()
    try:
        sent = sum(q.get(timeout=timeout) for _ in ps)
    finally:
        for p in ps:
            p.join(30)
            if p.is_alive():
                p.kill()
    if sent != len(spec):
        raise RuntimeError(f"published {sent} of {len(spec)}")
    return sent / (time.monotonic() - t0)


# --------------------------------------------------------------------------- the ingest process

def workers_in_force(flag: str | None) -> tuple[str, int]:
    """(how it was set, resolved count): the flag if given, else IngestConfig's default."""
    if flag is None:
        default = IngestConfig.model_fields["workers"].default
        return f"default ({default})", resolve_workers(default)
    return flag, resolve_workers(flag if flag == "auto" else int(flag))


def client_ids(base: str, workers: int) -> list[str]:
    return [worker_client_id(base, i) for i in range(workers)]  # ingest/workers.py


@dataclass
class IngestProc:
    """``hailong ingest run`` with DEFAULT settings but for connection details (and a loopback /healthz
    on a free port, for progress). ``workers``: None = the default applies, else "auto" or "N"."""

    workdir: Path
    broker: MosquittoServer
    influx: InfluxServer
    database: str
    fleet: Path
    client_id: str
    group: str
    workers: str | None = None
    extra_toml: str = ""  # whole sections appended (the Mosquitto sweep leaves it empty)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def conf(self) -> Path:
        path = self.workdir / f"{self.client_id}.toml"
        workers = "" if self.workers is None else (
            'workers = "auto"\n' if self.workers == "auto" else f"workers = {int(self.workers)}\n")
        path.write_text(f"""client_id = "{self.client_id}"
share_group = "{self.group}"
registry = "{self.fleet}"
{workers}[mqtt]
url = "mqtt://127.0.0.1:{self.broker.port}"
username = "{self.broker.username}"
[influx]
url = "{self.influx.url}"
api = "v1"
database = "{self.database}"
[health]
http_port = 0
{self.extra_toml}""", encoding="utf-8")
        return path

    def start(self, phase: str) -> IngestProc:
        env = dict(os.environ, HAILONG_INGEST__MQTT__PASSWORD=self.broker.password)
        self.log = self.workdir / f"{self.client_id}.{phase}.log"
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", "ingest", "run", "--config",
                                      str(self.conf())], env=env, stdout=fh, stderr=subprocess.STDOUT)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def wait_connected(self, ids: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if all(f"{cid} connected to" in text for cid in ids):
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            if "config error" in text or "exited with" in text:  # a worker that cannot start: fail fast
                break
            time.sleep(0.05)
        errors = [ln for ln in self.log_text().splitlines() if "error" in ln.lower()][-3:]
        raise RuntimeError(f"ingest {ids} not connected; log {self.log}: " + " / ".join(errors or ["no error logged"]))

    def connected_at(self) -> float | None:
        """time.monotonic() of the first "connected to" in the log: when the drain can start."""
        stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* connected to ", self.log_text(), re.M)
        if not stamps:
            return None
        wall = min(datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp() for t in stamps)  # local time, as logged
        return time.monotonic() - (time.time() - wall)

    def acked(self) -> int:
        """Sum of ``acked`` over every /healthz in the log (each worker serves its own; the supervisor's
        group /healthz has no counter). Acks count redeliveries too: InfluxDB is the ground truth."""
        total = 0
        for port in set(re.findall(r"healthz on http://127\.0\.0\.1:(\d+)/healthz", self.log_text())):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    total += int(json.loads(r.read()).get("acked", 0))
            except urllib.error.HTTPError as exc:  # 503 = not alive, still a body
                total += int(json.loads(exc.read() or b"{}").get("acked", 0))
            except (OSError, ValueError):
                pass
        return total

    def stop(self, timeout: float = 90) -> None:
        stop_process(self.proc, timeout)  # the supervisor forwards SIGTERM and waits for the workers' flush
        self.proc = None


# --------------------------------------------------------------------------- memory guard

def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        if p in out or p <= 0:
            continue
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mb(pid: int) -> float:
    """RSS of ``pid`` and all its descendants, MB."""
    total = 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        except OSError:
            continue
    return total


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (per-process, not waited-for children)."""
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


@dataclass
class MemWatch:
    """Peak RSS per process tree, sampled every second; sets ``low`` when the box runs short."""

    pids: dict[str, int]
    peak: dict[str, float] = field(default_factory=dict)
    low: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemWatch:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(pid))
            if available_mb() < MIN_AVAILABLE_MB:
                self.low.set()
            if self._stop.wait(0.5):
                return

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:,.0f} MB" for k, v in self.peak.items())


# --------------------------------------------------------------------------- progress and exactly once

def count(db: InfluxQL, measurement: str = "rating") -> int:
    return int(db.scalar(f'SELECT count("score") FROM "{measurement}"') or 0)


def wait_progress(read: Callable[[], int], n: int, timeout: float, stall_s: float = 30,
                  every_s: float = 0.05) -> tuple[float, float]:
    """Poll ``read()`` until it reaches ``n``; return (time it first moved, time it reached n).
    Raises RuntimeError when it stops moving for ``stall_s`` or ``timeout`` passes."""
    first = 0.0
    t_start = time.monotonic()
    deadline = t_start + timeout
    last_v, last_change = -1, t_start
    while time.monotonic() < deadline:
        v = read()
        now = time.monotonic()
        if v and not first:
            first = now
        if v >= n:
            return first, now
        if v != last_v:
            last_v, last_change = v, now
        elif now - last_change > (stall_s if first else max(stall_s, 120)):
            break
        time.sleep(every_s)
    raise RuntimeError(f"stalled at {last_v} of {n} after {time.monotonic() - t_start:.0f}s")


@dataclass
class OnceReport:
    expected: int
    points: int = 0
    distinct: int = 0
    missing: int = 0
    extra: int = 0
    rejected: int = 0

    @property
    def ok(self) -> bool:
        return (self.points == self.distinct == self.expected and not self.missing and not self.extra
                and not self.rejected)

    def __str__(self) -> str:
        verdict = "exactly once" if self.ok else "NOT exactly once"
        return (f"{verdict}: {self.points:,} points, {self.distinct:,} distinct event_ids of {self.expected:,}"
                f" (missing {self.missing}, foreign {self.extra}, rejected {self.rejected})")


def exactly_once(db: InfluxQL, spec: RatingSpec) -> OnceReport:
    """Every event stored once: count the points and their distinct event_ids, a few seconds of
    rated_at (<= SLICE_N ratings per device, <= MAX_ROWS rows) per query, compared with the ids
    the spec generates."""
    rep = OnceReport(len(spec))
    step = max(1, min(SLICE_N, MAX_ROWS // len(spec.slots)))
    for n0 in range(0, spec.per_device, step):
        t0, t1 = BASE_MS + n0 * 1000, BASE_MS + (n0 + step) * 1000
        got = [str(r["event_id"]) for r in db.rows(
            f'SELECT "event_id" FROM "rating" WHERE time >= {t0}ms AND time < {t1}ms')]
        want = spec.ids_of_n(n0, n0 + step)
        seen = set(got)
        rep.points += len(got)
        rep.distinct += len(seen)
        rep.missing += len(want - seen)
        rep.extra += len(seen - want)
    rep.rejected = int(db.scalar('SELECT count("payload") FROM "rejected"') or 0)
    return rep
