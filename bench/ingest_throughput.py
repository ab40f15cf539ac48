"""Ingest throughput (issue 14): raw paho QoS1 vs `hailong ingest run` vs Node-RED, one run, same
Mosquitto and InfluxDB; and the backlog drain.

(a) and (b) drain the SAME kind of backlog: N ratings (100 devices) published into the consumer's
persistent session(s) while it is offline; then the consumer starts and we time first -> last:

  (a) raw     one paho QoS1 subscriber process that only counts messages (PUBACK on receipt): the
              ceiling for any MQTT consumer in Python;
  (b) ingest  `hailong ingest run` with DEFAULT settings except connection details (so the default
              `workers` applies unless --workers sets it); acked after the durable InfluxDB write;
              done = every rating acked AND stored; exactly once = as many points and distinct
              event_ids as ratings, every event_id the one published;
  (c) nodered Node-RED 4: mqtt in (QoS1) -> function -> influxdb out, live (published while it runs;
              restarted onto a queued backlog it wrote nothing). Node-RED acks on receipt.

--drain DxP: D devices x P buffered ratings each, drained by (b) alone; exactly once, time to
drain, peak memory of the ingest, Mosquitto and InfluxDB. The backlog is generated inside two
publisher processes in chunks and checked in slices, so the harness's own memory stays small.
--sweep: (b) once per Mosquitto setting that matters (inflight, nodelay, queue cap).

    python bench/ingest_throughput.py -n 50000 [--workers auto|N]      # (a), (b), (c)
    python bench/ingest_throughput.py --drain 1000x1000 [--workers auto|N]
    python bench/ingest_throughput.py -n 10000 --sweep --no-nodered

Own Mosquitto 2.0.11 and InfluxDB 1.6.7 in bench/out/; loopback only. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_common import (
    MIN_AVAILABLE_MB,
    NODERED,
    OUT,
    Broker,
    IngestProc,
    MemWatch,
    OnceReport,
    RatingSpec,
    client_ids,
    count,
    exactly_once,
    local_settings,
    publish,
    publish_spec,
    ratings,
    settings_for,
    wait_progress,
    workers_in_force,
    write_fleet,
)

from broker.mqtt.consumer import MqttConsumer
from broker.mqtt.session import MqttSession
from hailong.localstack import InfluxServer, MosquittoServer, free_port, stop_process
from storage.influxql import InfluxQL

__all__ = ["OUT", "publish", "ratings", "settings_for", "write_fleet"]  # bench/ingest_cpu.py imports these


# --------------------------------------------------------------------------- (a) raw paho

def _count(port: int, user: str, pw: str, client_id: str, n: int, result: mp.Queue, lean: bool) -> None:
    """n == 0: just create the persistent session and its subscription; else count n messages.

    paho (a): PUBACK on receipt. The ingest's consumer (a'): PUBACKs sent per 500 messages."""
    got = 0
    first = last = 0.0
    mids: list[int] = []
    c: MqttSession | MqttConsumer | None = None

    def counted() -> None:
        nonlocal got, first, last
        got += 1
        last = time.monotonic()
        if got == 1:
            first = last

    def on_lean(_t: str, _p: bytes, mid: int, _q: int, _r: bool) -> None:
        counted()
        mids.append(mid)
        if len(mids) >= 500 or got >= n:
            assert isinstance(c, MqttConsumer)
            c.ack_many(mids)
            mids.clear()

    settings = local_settings(port, user, pw)
    if lean:
        c = MqttConsumer(settings, client_id, subscriptions=[("$share/lean/hl/v1/+/+/rating", 1)],
                         session_expiry_s=3600, receive_maximum=2000, on_message=on_lean).start()
    else:
        c = MqttSession(settings, client_id, subscriptions=[("$share/raw/hl/v1/+/+/rating", 1)],
                        session_expiry_s=3600, receive_maximum=2000, on_message=lambda _m: counted()).start()
    deadline = time.monotonic() + 600
    if n == 0:
        c.subscribed.wait(30)
    while got < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the last PUBACKs leave before the DISCONNECT
    c.stop()
    result.put((got, first, last))


def run_raw(broker: MosquittoServer, spec: RatingSpec, lean: bool = False) -> float:
    q: mp.Queue = mp.Queue()
    cid = f"raw-{uuid.uuid4().hex[:6]}"
    args = (broker.port, broker.username, broker.password, cid)
    p = mp.Process(target=_count, args=(*args, 0, q, lean))
    p.start()
    q.get(timeout=60)
    p.join(30)
    publish_spec(broker, spec)
    p = mp.Process(target=_count, args=(*args, len(spec), q, lean))
    p.start()
    got, first, last = q.get(timeout=660)
    p.join(30)
    if got < len(spec):
        raise RuntimeError(f"raw consumer got {got} of {len(spec)}")
    return len(spec) / (last - first)


# --------------------------------------------------------------------------- (b) hailong ingest

@dataclass
class IngestRun:
    rate: float
    seconds: float
    workers: str
    once: OnceReport
    received: int  # messages the workers received (> n: redeliveries after a reconnect)
    memory: str
    publish_rate: float


def run_ingest(workdir: Path, broker: MosquittoServer, influx: InfluxServer, fleet: Path, spec: RatingSpec,
               workers: str | None, timeout: float = 900, stall_s: float = 30, extra_toml: str = "") -> IngestRun:
    """Drain ``spec`` from the persistent session(s) of one `hailong ingest run`."""
    db = InfluxQL(influx.url, f"b_{uuid.uuid4().hex[:8]}")
    db.create_database()
    label, n_workers = workers_in_force(workers)
    base = f"ingest-{uuid.uuid4().hex[:6]}"
    # a fresh share group per run: the offline sessions of earlier runs are still members of theirs,
    # and Mosquitto would route them a share of this run's messages
    ing = IngestProc(workdir, broker, influx, db.database, fleet, base, f"bench{uuid.uuid4().hex[:6]}",
                     workers, extra_toml)
    ing.start("init")  # create every worker's persistent session and subscriptions, then go offline
    try:
        ing.wait_connected(client_ids(base, n_workers))
        time.sleep(0.5)  # SUBACKs
    finally:
        ing.stop()
    pub_rate = publish_spec(broker, spec)
    ing.start("run")
    assert ing.proc is not None
    try:
        with MemWatch({"ingest": ing.proc.pid, "mosquitto": broker.proc.pid if broker.proc else 0,
                       "influxd": influx.proc.pid if influx.proc else 0}) as mem:
            def acked() -> int:
                if mem.low.is_set():
                    raise RuntimeError(f"less than {MIN_AVAILABLE_MB} MB available: aborted ({mem})")
                return ing.acked()

            first, last = wait_progress(acked, len(spec), timeout, stall_s)
            # from the first worker's connection (log time, ms): the first batch's acks are not the start
            first = min(first, ing.connected_at() or first)
            # acks also count redeliveries after a reconnect: the stored points are the ground truth
            _, stored_at = wait_progress(lambda: count(db), len(spec), 120, stall_s, every_s=0.02)
            last = max(last, stored_at)
    finally:
        ing.stop()
    received = sum(int(x) for x in re.findall(r"stopped: received=(\d+)", ing.log_text()))
    return IngestRun(len(spec) / (last - first), last - first, f"{label} = {n_workers}", exactly_once(db, spec),
                     received, str(mem), pub_rate)


# --------------------------------------------------------------------------- (c) Node-RED

FUNCTION = """const r = msg.payload;
msg.payload = [{score: r.score, scale: r.scale, ticket: r.ticket || "", event_id: r.event_id, time: r.rated_at},
               {centre: r.centre, counter: r.counter, officer: r.officer, device: r.device}];
return msg;"""


def run_nodered(workdir: Path, broker: MosquittoServer, influx: InfluxServer,
                msgs: list[tuple[str, bytes]]) -> tuple[float, str]:
    """(ratings/s stored, description); rate 0 when Node-RED is not installed."""
    red = NODERED / "node_modules" / "node-red" / "red.js"
    if not red.exists() or shutil.which("node") is None:
        return 0.0, "not installed (cd bench/out/nodered && npm install node-red@4 node-red-contrib-influxdb)"
    db = InfluxQL(influx.url, f"nr_{uuid.uuid4().hex[:8]}")
    db.create_database()
    user_dir = workdir / "nodered"
    user_dir.mkdir(exist_ok=True)
    port = free_port()
    flows = [
        {"id": "tab", "type": "tab", "label": "hailong"},
        {"id": "br", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(broker.port),
         "clientid": "nr-bench", "autoConnect": True, "usetls": False, "protocolVersion": "4",
         "keepalive": "60", "cleansession": False},
        {"id": "in", "type": "mqtt in", "z": "tab", "topic": "hl/v1/+/+/rating", "qos": "1", "datatype": "json",
         "broker": "br", "nl": False, "rap": False, "inputs": 0, "wires": [["fn"]]},
        {"id": "fn", "type": "function", "z": "tab", "func": FUNCTION, "outputs": 1, "wires": [["out"]]},
        {"id": "db", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx.port), "protocol": "http",
         "database": db.database, "influxdbVersion": "1.x", "timeout": 10},
        {"id": "out", "type": "influxdb out", "z": "tab", "influxdb": "db", "measurement": "rating",
         "precision": "ms", "retentionPolicy": "", "wires": []},
    ]
    (user_dir / "flows.json").write_text(json.dumps(flows))
    (user_dir / "flows_cred.json").write_text(json.dumps({"br": {"user": broker.username,
                                                                "password": broker.password}}))
    (user_dir / "settings.js").write_text(
        f'module.exports = {{credentialSecret: false, uiPort: {port}, uiHost: "127.0.0.1", '
        'flowFile: "flows.json", logging: {console: {level: "warn"}}};\n')
    log = open(user_dir / "node-red.log", "ab")  # noqa: SIM115
    p = subprocess.Popen(["node", str(red), "--userDir", str(user_dir), "--settings", str(user_dir / "settings.js")],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "nr-bench" not in broker.logs():
            time.sleep(0.2)
        time.sleep(3)  # flows started, subscription made
        t0 = time.monotonic()
        publish(settings_for(broker), msgs)
        try:
            _, last = wait_progress(lambda: count(db), len(msgs), 600, stall_s=15, every_s=0.1)
        except RuntimeError:
            last = time.monotonic() - 15  # the stall detector waited 15 s after the last new point
    finally:
        stop_process(p, 60)
    stored = count(db)
    errors = (user_dir / "node-red.log").read_text(errors="replace").count("[error] [influxdb out")
    rate = stored / (last - t0)
    return rate, (f"{rate:,.0f} ratings/s stored; {stored:,} of {len(msgs):,} stored, "
                  f"{len(msgs) - stored:,} LOST ({errors} influxdb-out errors; Node-RED acks on receipt)")


# --------------------------------------------------------------------------- main

def table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| run | result |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def save_rows(path: Path | None, rows: list[tuple[str, str]]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as fh:
            for what, result in rows:
                fh.write(json.dumps({"what": what, "result": result}, ensure_ascii=False) + "\n")


def ingest_row(name: str, r: IngestRun, raw: float | None = None, lean: float | None = None) -> tuple[str, str]:
    ratio = f"; **(b)/(a) = {r.rate / raw:.2f}**" if raw else ""
    ratio += f", (b)/(a') = {r.rate / lean:.2f}" if lean else ""
    return (f"{name}, workers {r.workers}",
            f"{r.rate:,.0f} ratings/s ({r.seconds:,.1f} s); {r.once}; received {r.received:,}{ratio}; "
            f"peak RSS {r.memory}")


def drain(args: argparse.Namespace, workdir: Path, influx: InfluxServer, servers: list) -> list[tuple[str, str]]:
    devices, per = (int(x) for x in args.drain.lower().split("x"))
    broker = Broker(workdir / "mosq").start()
    servers.append(broker)
    slots = write_fleet(workdir / "fleet", max(1, -(-devices // 100)), min(devices, 100))[:devices]
    spec = RatingSpec.new(slots, per)
    t0 = time.monotonic()
    r = run_ingest(workdir, broker, influx, workdir / "fleet", spec, args.workers, timeout=args.drain_timeout,
                   stall_s=90)
    target = " (target <= 150 s)" if len(spec) >= 1_000_000 else ""
    return [(f"backlog drain {devices:,} devices x {per:,} = {len(spec):,}, workers {r.workers}",
             f"**{r.seconds:,.1f} s**{target} = {r.rate:,.0f} ratings/s; {r.once}; received {r.received:,}; "
             f"published at {r.publish_rate:,.0f}/s ({time.monotonic() - t0:,.0f} s incl. publish); "
             f"peak RSS {r.memory}")]


def throughput(args: argparse.Namespace, workdir: Path, influx: InfluxServer, servers: list) -> list[tuple[str, str]]:
    slots = write_fleet(workdir / "fleet", 2, 50)
    broker = Broker(workdir / "mosq").start()
    servers.append(broker)
    spec = RatingSpec.new(slots, max(1, args.n // len(slots)))
    rows: list[tuple[str, str]] = []
    raw = run_raw(broker, spec)
    rows.append((f"(a) raw paho QoS1 pass-through, one process, n={len(spec):,}", f"{raw:,.0f} msg/s"))
    print(table(rows[-1:]), flush=True)
    lean = run_raw(broker, spec, lean=True)
    rows.append((f"(a') the same pass-through with the ingest's consumer (broker/mqtt/consumer.py), "
                 f"n={len(spec):,}", f"{lean:,.0f} msg/s"))
    print(table(rows[-1:]), flush=True)
    r: IngestRun | None = None
    try:
        r = run_ingest(workdir, broker, influx, workdir / "fleet", spec, args.workers)
        rows.append(ingest_row("(b) `hailong ingest run`, default settings", r, raw, lean))
    except RuntimeError as exc:
        rows.append((f"(b) `hailong ingest run`, workers {workers_in_force(args.workers)[0]}",
                     f"FAILED: {str(exc)[:300]}".replace("\n", " / ")))
    print(rows[-1], flush=True)
    if not args.no_nodered:
        nr_msgs = list(spec.messages(0, args.nodered_n))
        rate, text = run_nodered(workdir, broker, influx, nr_msgs)
        rows.append((f"(c) Node-RED 4 mqtt in -> function -> influxdb out, live, n={len(nr_msgs):,}",
                     text + (f"; (b)/(c) = {r.rate / rate:.1f}" if rate and r else "")))
        print(rows[-1], flush=True)
    if args.sweep:
        sweep = RatingSpec.new(slots, max(1, args.sweep_n // len(slots)))
        for name, overrides in (
            ("as rendered: max_inflight_messages 0, set_tcp_nodelay true, max_queued_messages 0", {}),
            ("max_inflight_messages 20 (default)", {"max_inflight_messages": "20"}),
            ("set_tcp_nodelay false (default)", {"set_tcp_nodelay": "false"}),
            ("max_queued_messages 1000 (default)", {"max_queued_messages": "1000"}),
        ):
            b = Broker(workdir / f"mosq-{uuid.uuid4().hex[:4]}", overrides=overrides).start()
            servers.append(b)
            try:
                s = run_ingest(workdir, b, influx, workdir / "fleet", sweep, args.workers, timeout=180, stall_s=15)
                rows.append((f"Mosquitto {name}, n={len(sweep):,}", f"{s.rate:,.0f} ratings/s; {s.once}"))
            except RuntimeError as exc:
                rows.append((f"Mosquitto {name}, n={len(sweep):,}", str(exc)))
            b.stop()
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="ratings per throughput run (100 devices)")
    ap.add_argument("--workers", default=None, help="set `workers` (auto or N); default: ingest.toml's default")
    ap.add_argument("--nodered-n", type=int, default=20_000, help="ratings for the Node-RED run")
    ap.add_argument("--no-nodered", action="store_true", help="skip (c)")
    ap.add_argument("--sweep", action="store_true", help="also (b) per Mosquitto setting")
    ap.add_argument("--sweep-n", type=int, default=10_000, help="ratings per Mosquitto-settings run")
    ap.add_argument("--drain", default="", help="DEVICESxPER_DEVICE backlog drain instead, e.g. 1000x1000")
    ap.add_argument("--drain-timeout", type=float, default=1200, help="give up draining after this many s")
    ap.add_argument("--rows", type=Path, default=None, help="append the result rows (JSON lines) here")
    args = ap.parse_args()
    if args.workers is not None and args.workers != "auto" and not args.workers.isdigit():
        ap.error("--workers: auto or a number")
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=OUT))
    influx = InfluxServer(workdir / "influx").start()
    servers: list[MosquittoServer | InfluxServer] = [influx]
    try:
        rows = drain(args, workdir, influx, servers) if args.drain else throughput(args, workdir, influx, servers)
    finally:
        for s in servers:
            s.stop()
    print()
    print(table(rows))
    save_rows(args.rows, rows)
    for data in (workdir / "influx", *workdir.glob("mosq*/data")):  # GBs after a 1M drain; logs stay
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
