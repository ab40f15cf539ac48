"""Tap -> InfluxDB latency of `hailong ingest run` under load (issue 14: p99 <= 1 s at 1,000 ratings/s).

A background publisher process paces ``--rate`` ratings/s over the 50 devices of centre bc000
(every 10 ms it catches up with rate x elapsed). Meanwhile ``--probes`` probe ratings are published
from the 50 devices of centre bc001 at random (exponential) intervals, ``--probe-rate`` per second
on average. A probe's clock starts just before its QoS 1 publish (payload already encoded); it
stops when a poller, querying InfluxDB every ``--poll-ms`` for the bc001 points at or after the
oldest probe not yet seen, first gets the probe's event_id back (the query's response time, so
the poll period and the query are included: the latency is an upper bound by up to one poll).

The ingest runs with DEFAULT settings except connection details (``--workers`` sets `workers`);
its CPU (all processes) over the probe window is reported per background rating too.

    python bench/ingest_latency.py                        # 500 probes at 1,000 ratings/s
    python bench/ingest_latency.py --probes 200 --workers auto

Own Mosquitto 2.0.11 and InfluxDB 1.6.7 in bench/out/; loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_common import (
    OUT,
    Broker,
    IngestProc,
    client_ids,
    cpu_s,
    local_settings,
    rating_doc,
    settings_for,
    wait_progress,
    workers_in_force,
    write_fleet,
)
from ingest_throughput import save_rows, table

from broker.mqtt.session import MqttSession
from hailong.localstack import InfluxServer, MosquittoServer
from storage.influxql import InfluxQL

BG_CENTRE, PROBE_CENTRE = "bc000", "bc001"


def _background(port: int, user: str, pw: str, slots: list[tuple[str, str, str]], rate: float, seconds: float,
                result: mp.Queue) -> None:
    """Publish ``rate`` ratings/s for ``seconds``, round-robin over ``slots``; report (sent, achieved/s)."""
    settings = local_settings(port, user, pw)
    pubs = [MqttSession(settings, f"bench-bg-{i}-{uuid.uuid4().hex[:6]}", max_inflight=1000).start()
            for i in range(2)]
    for p in pubs:
        p.wait_connected(30)
    per_device = [0] * len(slots)
    sent = 0
    t0 = time.monotonic()
    last = None
    while (elapsed := time.monotonic() - t0) < seconds:
        due = int(rate * elapsed)
        while sent < due:
            s = sent % len(slots)
            centre, device, counter = slots[s]
            n = per_device[s]
            per_device[s] += 1
            doc = rating_doc(centre, device, counter, n, str(uuid.uuid4()), int(time.time() * 1000), f"L-{n}")
            last = pubs[s % len(pubs)].publish(f"hl/v1/{centre}/{device}/rating", json.dumps(doc).encode())
            sent += 1
        time.sleep(0.01)
    achieved = sent / (time.monotonic() - t0)
    if last is not None:
        last.wait_for_publish(timeout=60)
    time.sleep(1)  # the PUBACKs of the last window (each client's are in order)
    for p in pubs:
        p.stop()
    result.put((sent, achieved))


class Prober:
    """Publish probes and find each one in InfluxDB; first-seen time per event_id."""

    def __init__(self, broker: MosquittoServer, db: InfluxQL, slots: list[tuple[str, str, str]], poll_s: float):
        self.session = MqttSession(settings_for(broker), f"bench-probe-{uuid.uuid4().hex[:6]}", max_inflight=100)
        self.db, self.slots, self.poll_s = db, slots, poll_s
        self.sent: dict[str, tuple[float, int]] = {}  # event_id -> (monotonic at publish, rated_at ms)
        self.seen: dict[str, float] = {}
        self.query_s: list[float] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def publish(self, k: int) -> None:
        centre, device, counter = self.slots[k % len(self.slots)]
        n = k // len(self.slots)
        eid = str(uuid.uuid4())
        rated_ms = int(time.time() * 1000)
        payload = json.dumps(rating_doc(centre, device, counter, n, eid, rated_ms, f"P-{n}")).encode()
        with self._lock:
            t = time.monotonic()  # just before the publish
            self.sent[eid] = (t, rated_ms)
        self.session.publish(f"hl/v1/{centre}/{device}/rating", payload)

    def poll(self, deadline: float) -> None:
        while not self._done.is_set() and time.monotonic() < deadline:
            with self._lock:
                pending = [rated for eid, (_, rated) in self.sent.items() if eid not in self.seen]
            if pending:
                t0 = time.monotonic()
                rows = self.db.rows(f'SELECT "event_id" FROM "rating" WHERE "centre" = \'{PROBE_CENTRE}\' '
                                    f'AND time >= {min(pending)}ms')
                t1 = time.monotonic()
                self.query_s.append(t1 - t0)
                with self._lock:
                    for r in rows:
                        eid = str(r["event_id"])
                        if eid in self.sent and eid not in self.seen:
                            self.seen[eid] = t1
            time.sleep(self.poll_s)

    def latencies_ms(self) -> list[float]:
        return sorted((self.seen[e] - t) * 1000 for e, (t, _) in self.sent.items() if e in self.seen)


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``xs``."""
    return xs[min(len(xs), max(1, math.ceil(p / 100 * len(xs)))) - 1] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000, help="background ratings/s")
    ap.add_argument("--probes", type=int, default=500)
    ap.add_argument("--probe-rate", type=float, default=10, help="probes/s on average (exponential gaps)")
    ap.add_argument("--poll-ms", type=float, default=20, help="InfluxDB poll period")
    ap.add_argument("--warmup-s", type=float, default=5)
    ap.add_argument("--workers", default=None, help="set `workers` (auto or N); default: ingest.toml's default")
    ap.add_argument("--rows", type=Path, default=None, help="append the result rows (JSON lines) here")
    args = ap.parse_args()
    if args.workers is not None and args.workers != "auto" and not args.workers.isdigit():
        ap.error("--workers: auto or a number")
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="latency-", dir=OUT))
    influx = InfluxServer(work / "influx").start()
    broker = Broker(work / "mosq").start()
    label, n_workers = workers_in_force(args.workers)
    db = InfluxQL(influx.url, f"lat_{uuid.uuid4().hex[:8]}")
    db.create_database()
    slots = write_fleet(work / "fleet", 2, 50)
    bg_slots = [s for s in slots if s[0] == BG_CENTRE]
    probe_slots = [s for s in slots if s[0] == PROBE_CENTRE]
    base = f"ingest-{uuid.uuid4().hex[:6]}"
    ing = IngestProc(work, broker, influx, db.database, work / "fleet", base, f"lat{uuid.uuid4().hex[:6]}",
                     args.workers)
    probe_window = args.probes / args.probe_rate
    q: mp.Queue = mp.Queue()
    bg = mp.Process(target=_background, args=(broker.port, broker.username, broker.password, bg_slots, args.rate,
                                              args.warmup_s + probe_window + 2, q))
    prober = Prober(broker, db, probe_slots, args.poll_ms / 1000)
    try:
        ing.start("run")
        ing.wait_connected(client_ids(base, n_workers))
        time.sleep(1)  # SUBACKs
        prober.session.start().wait_connected(30)
        assert ing.proc is not None
        bg.start()
        time.sleep(args.warmup_s)
        poller = threading.Thread(target=prober.poll, args=(time.monotonic() + probe_window + 60,), daemon=True)
        poller.start()
        rng = random.Random(14)
        c0, t0 = cpu_s(ing.proc.pid), time.monotonic()
        for k in range(args.probes):
            time.sleep(rng.expovariate(args.probe_rate))
            prober.publish(k)
        c1, t1 = cpu_s(ing.proc.pid), time.monotonic()
        deadline = time.monotonic() + 30  # the last probes: seen, or lost
        while len(prober.seen) < args.probes and time.monotonic() < deadline:
            time.sleep(0.05)
        prober._done.set()
        poller.join(10)
        bg_sent, bg_rate = q.get(timeout=120)
        bg.join(30)
        with contextlib.suppress(RuntimeError):  # short: reported below as stored of sent
            wait_progress(lambda: int(db.scalar(f'SELECT count("score") FROM "rating" WHERE "centre" = '
                                                f"'{BG_CENTRE}'") or 0), bg_sent, 60, stall_s=15, every_s=0.2)
        bg_stored = int(db.scalar(f"SELECT count(\"score\") FROM \"rating\" WHERE \"centre\" = '{BG_CENTRE}'") or 0)
    finally:
        prober.session.stop()
        ing.stop()
        if bg.is_alive():
            bg.kill()
        broker.stop()
        influx.stop()
    lat = prober.latencies_ms()
    qs = sorted(x * 1000 for x in prober.query_s)
    rate_in_window = args.rate + args.probes / (t1 - t0)
    rows = [(f"tap -> InfluxDB latency, background {bg_rate:,.0f} ratings/s, workers {label} = {n_workers}",
             f"{len(lat)} of {args.probes} probes seen; p50 {pct(lat, 50):,.0f} ms, p90 {pct(lat, 90):,.0f} ms, "
             f"**p99 {pct(lat, 99):,.0f} ms**, max {pct(lat, 100):,.0f} ms (target p99 <= 1,000 ms); "
             f"poll every {args.poll_ms:g} ms, query p50 {pct(qs, 50):.1f} ms / p99 {pct(qs, 99):.1f} ms"),
            ("ingest CPU at that load (all its processes, probe window)",
             f"{(c1 - c0) / (t1 - t0) * 100:.0f} % of one core = {(c1 - c0) / (rate_in_window * (t1 - t0)) * 1e6:,.0f}"
             f" µs per rating; background stored {bg_stored:,} of {bg_sent:,}")]
    print(table(rows))
    save_rows(args.rows, rows)


if __name__ == "__main__":
    main()
