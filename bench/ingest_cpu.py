"""CPU per rating inside one ingest worker, measured in-process (issue 14's 60 µs target), and the floor.

Publishes N ratings (the throughput benchmark's payload mix) into a persistent session while
the consumer is offline, then measures this process's CPU time (all threads) from the consumer's
start to the last message acked, divided by N:

- floors: a paho client (MqttSession, MQTT 5 and 3.1.1, manual ack, same receive maximum) that does
  nothing but ack each message on receipt, and the ingest's own consumer (broker/mqtt/consumer.py)
  doing the same with acks batched by 1,000: what MQTT parsing and PUBACKs cost before any judging;
- ingest: ``IngestService`` in this process (the consumer's network thread, the judge, the writer; the
  InfluxDB HTTP write included; acked after the write). InfluxDB and Mosquitto run in their own
  processes and are not counted.

    python bench/ingest_cpu.py                      # 20,000 ratings: floor and ingest, µs per rating
    python bench/ingest_cpu.py --profile            # + py-spy flame graph bench/out/flame.svg and a
                                                    #   top-functions list (bench/out/flame.txt)
    python bench/ingest_cpu.py --yappi top.txt      # + a yappi profile of every thread (top 40)

With --profile the ingest runs in a child process under ``py-spy record --subprocesses`` (twice:
once for the SVG, once in raw format for the top list), so the flame graph shows the drain only,
not the set-up and publishing. py-spy's sampling slows the child; the µs/rating reported is
always from the unprofiled in-process run.

Own Mosquitto 2.0.11 and InfluxDB 1.6.7 under bench/out/; loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_common import OUT, publish, ratings, settings_for, write_fleet

from broker.contract import TopicKind, subscription
from broker.mqtt.consumer import MqttConsumer
from broker.mqtt.session import Message, MqttSession
from hailong.localstack import InfluxServer, MosquittoServer
from ingest.config import IngestConfig
from ingest.service import IngestService
from storage.influxql import InfluxQL


def us(run: tuple[int, float, float]) -> float:
    """µs of CPU per message of one (acked, CPU s, wall s) measurement."""
    return run[1] / max(run[0], 1) * 1e6


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def config(conn: dict[str, Any]) -> IngestConfig:
    uid = conn["uid"]
    return IngestConfig.model_validate({
        "mqtt": {"url": f"mqtt://127.0.0.1:{conn['port']}", "username": conn["user"], "password": conn["pw"]},
        "influx": {"url": conn["influx"], "api": "v1", "database": conn["db"]},
        "client_id": f"hl-ingest-cpu-{uid}", "share_group": f"cpu{uid}", "registry": conn["fleet"],
        "batch": {"size": 1000, "max_delay_ms": 100, "max_in_flight": 2000},
    })


def measure_ingest(cfg: IngestConfig, n: int, timeout: float = 600) -> tuple[int, float, float]:
    """Drain the backlog in this process: (acked, CPU s, wall s) from start to the last ack."""
    svc = IngestService(cfg)
    c0, t0 = cpu_s(), time.monotonic()
    svc.start()
    deadline = time.monotonic() + timeout
    while svc.stats.acked < n and time.monotonic() < deadline:
        time.sleep(0.02)
    c1, t1 = cpu_s(), time.monotonic()
    svc.stop()
    return svc.stats.acked, c1 - c0, t1 - t0


def floor(broker: MosquittoServer, msgs: list[tuple[str, bytes]], receive_maximum: int, protocol: str = "5",
          timeout: float = 300) -> tuple[int, float, float]:
    """(acked, CPU s, wall s) of a paho consumer that only acks, on its own backlog of ``msgs``.
    MQTT 3.1.1 has no receive maximum (the broker's max_inflight_messages bounds it instead)."""
    cid, group = f"floor-{uuid.uuid4().hex[:6]}", f"floor{uuid.uuid4().hex[:6]}"
    acked = 0
    done = threading.Event()
    session: MqttSession | None = None

    def on_message(m: Message) -> None:
        nonlocal acked
        assert session is not None
        session.ack(m.mid, m.qos)
        acked += 1
        if acked >= len(msgs):
            done.set()

    def make() -> MqttSession:
        nonlocal session
        settings = settings_for(broker).model_copy(update={"protocol": protocol})
        session = MqttSession(settings, cid, subscriptions=[(subscription(TopicKind.RATING, share_group=group), 1)],
                              session_expiry_s=3600, receive_maximum=receive_maximum, manual_ack=True,
                              on_message=on_message)
        return session

    cpu, wall = timed_drain(make, broker, msgs, done, timeout)
    return acked, cpu, wall


def timed_drain(make: Callable[[], MqttSession | MqttConsumer], broker: MosquittoServer,
                msgs: list[tuple[str, bytes]], done: threading.Event, timeout: float) -> tuple[float, float]:
    """Create the persistent session (then offline), publish the backlog into it, drain it: (CPU s, wall s)."""
    first = make().start()
    first.subscribed.wait(30)
    first.stop()
    publish(settings_for(broker), msgs)
    client = make()
    c0, t0 = cpu_s(), time.monotonic()
    client.start()
    done.wait(timeout)
    c1, t1 = cpu_s(), time.monotonic()
    time.sleep(0.2)  # let the last PUBACKs leave before the DISCONNECT
    client.stop()
    return c1 - c0, t1 - t0


def lean_floor(broker: MosquittoServer, msgs: list[tuple[str, bytes]], receive_maximum: int,
               timeout: float = 300) -> tuple[int, float, float]:
    """(acked, CPU s, wall s) of the ingest's own consumer (MqttConsumer) acking in batches of 1,000, no judging."""
    cid, group = f"lean-{uuid.uuid4().hex[:6]}", f"lean{uuid.uuid4().hex[:6]}"
    mids: list[int] = []
    acked = 0
    done = threading.Event()
    consumer: MqttConsumer | None = None

    def on_message(_t: str, _p: bytes, mid: int, _q: int, _r: bool) -> None:
        nonlocal acked
        assert consumer is not None
        mids.append(mid)
        if len(mids) >= 1000 or acked + len(mids) >= len(msgs):
            consumer.ack_many(mids)
            acked += len(mids)
            mids.clear()
        if acked >= len(msgs):
            done.set()

    def make() -> MqttConsumer:
        nonlocal consumer
        consumer = MqttConsumer(settings_for(broker), cid,
                                subscriptions=[(subscription(TopicKind.RATING, share_group=group), 1)],
                                session_expiry_s=3600, receive_maximum=receive_maximum, on_message=on_message)
        return consumer

    cpu, wall = timed_drain(make, broker, msgs, done, timeout)
    return acked, cpu, wall


FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")
ROLES = (("IngestService._work", "judge (ingest-worker thread)"), ("IngestService._write_loop", "writer thread"),
         ("MqttConsumer._run", "MQTT consumer network thread"))


def top_functions(raw: Path, limit: int = 25) -> str:
    """Per-thread split, then self and inclusive sample shares per function, from py-spy's raw
    (collapsed-stack) output. Start-up stacks (imports) are left out: the drain is what counts."""
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    role_n: Counter[str] = Counter()
    total = startup = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        if "<frozen importlib" in stack:
            startup += n
            continue
        total += n
        # "func (path/file.py:line)" -> "func (path/file.py)": per function, not per line
        frames = [(f"{m.group(1)} ({m.group(2)})" if (m := FRAME.match(f)) else f) for f in stack.split(";")]
        frames = [f.replace(str(Path(sys.prefix)), "<py>") for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
        role_n[next((role for key, role in ROLES if any(key in f for f in frames)), "other")] += n
    total = max(total, 1)
    out = [f"{total} samples of the drain, thread holding the GIL ({startup} start-up samples left out)", "",
           "GIL %  thread"]
    out += [f"{c / total * 100:7.1f}  {r}" for r, c in role_n.most_common()]
    out += ["", "self %  function"]
    out += [f"{c / total * 100:5.1f}  {f}" for f, c in self_n.most_common(limit)]
    out += ["", "incl %  function"]
    out += [f"{c / total * 100:5.1f}  {f}" for f, c in incl_n.most_common(limit)]
    return "\n".join(out)


def profile(args: argparse.Namespace, broker: MosquittoServer, slots: list[tuple[str, str, str]],
            base: dict[str, Any]) -> None:
    """Two py-spy runs of the drain in a child process: the SVG, then raw stacks for the top list."""
    if shutil.which("py-spy") is None:
        print("py-spy not found: pip install py-spy")
        return
    # the SVG samples every active thread; the top list only the thread holding the GIL (--gil): a
    # thread woken from a queue but waiting for the GIL looks busy otherwise, and the GIL is the limit
    for fmt, out, gil in (("flamegraph", args.svg, []), ("raw", args.svg.with_suffix(".txt.raw"), ["--gil"])):
        # a fresh backlog (new event ids) and database for each child: every rating judged as new
        uid = uuid.uuid4().hex[:6]
        conn = {**base, "db": f"cpu{uid}", "uid": uid}
        InfluxQL(conn["influx"], conn["db"]).create_database()
        msgs = ratings(slots, max(1, args.ratings // len(slots)))
        svc = IngestService(config(conn)).start()  # its persistent session and subscription
        svc.stop()
        publish(settings_for(broker), msgs)
        cmd = ["py-spy", "record", "--subprocesses", *gil, "-r", "200", "-f", fmt, "-o", str(out), "--",
               sys.executable, __file__, "--child", json.dumps(conn), "--ratings", str(len(msgs))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "", flush=True)
        if proc.returncode != 0:
            print(f"py-spy failed ({proc.returncode}): {proc.stderr[-1000:]}")
            return
    text = top_functions(args.svg.with_suffix(".txt.raw"))
    args.svg.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    print(f"flame graph: {args.svg}; top functions: {args.svg.with_suffix('.txt')}")
    print("\n".join(text.splitlines()[:30]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3,
                    help="measure each floor and the ingest this often, interleaved; the best counts "
                         "(this VM's CPU speed varies by ±30 %% between runs of the same loop)")
    ap.add_argument("--profile", action="store_true", help="py-spy flame graph of the drain (child process)")
    ap.add_argument("--svg", type=Path, default=OUT / "flame.svg", help="where --profile writes the flame graph")
    ap.add_argument("--yappi", type=Path, default=None, help="write a yappi top-40 (all threads) here")
    ap.add_argument("--rows", type=Path, default=None, help="append the result rows (JSON lines) here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: drain only (under py-spy)
    args = ap.parse_args()
    if args.child:
        n, cpu, wall = measure_ingest(config(json.loads(args.child)), args.ratings)
        print(f"child: {n} acked, {cpu / max(n, 1) * 1e6:.1f} µs per rating under py-spy ({n / wall:,.0f}/s)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cpu-", dir=OUT))
    broker = MosquittoServer(work / "mqtt").start()
    influx = InfluxServer(work / "influx").start()
    try:
        slots = write_fleet(work / "fleet", 1, 100)
        runs: dict[str, list[tuple[int, float, float]]] = {"paho5": [], "paho311": [], "lean": [], "ingest": []}
        conn: dict[str, Any] = {}
        for rep in range(args.repeats):
            # fresh event ids, database, client id and share group per repetition: every rating is new
            uid = uuid.uuid4().hex[:6]
            conn = {"port": broker.port, "user": broker.username, "pw": broker.password, "influx": influx.url,
                    "db": f"cpu{uid}", "fleet": str(work / "fleet"), "uid": uid}
            InfluxQL(influx.url, conn["db"]).create_database()
            msgs = ratings(slots, max(1, args.ratings // len(slots)))
            cfg = config(conn)
            runs["paho5"].append(floor(broker, msgs, cfg.batch.max_in_flight))
            runs["paho311"].append(floor(broker, msgs, cfg.batch.max_in_flight, protocol="3.1.1"))
            runs["lean"].append(lean_floor(broker, msgs, cfg.batch.max_in_flight))
            svc = IngestService(cfg).start()  # creates the persistent session and subscription
            svc.stop()
            publish(settings_for(broker), msgs)
            if args.yappi and rep == args.repeats - 1:
                import yappi

                yappi.set_clock_type("cpu")
                yappi.start(builtins=False)
            runs["ingest"].append(measure_ingest(cfg, len(msgs)))
            print(f"repetition {rep + 1}: " + ", ".join(f"{k} {us(v[-1]):.1f} µs" for k, v in runs.items()))
        if args.yappi:
            yappi.stop()
            stats = yappi.get_func_stats()
            stats.sort("ttot")
            with args.yappi.open("w") as fh:
                stats.print_all(out=fh, columns={0: ("name", 90), 1: ("ncall", 9), 2: ("tsub", 8), 3: ("ttot", 8)})
        n_msgs = args.ratings // len(slots) * len(slots)

        def cell(key: str) -> str:
            best = min(runs[key], key=us)
            return (f"{us(best):.1f} µs CPU per message, best of {len(runs[key])} (all: "
                    f"{', '.join(f'{us(r):.1f}' for r in runs[key])}; {best[0]:,} acked, {best[0] / best[2]:,.0f}/s)")

        ingest_best = min(us(r) for r in runs["ingest"])
        paho_best = min(us(r) for r in runs["paho5"])
        rows = [
            (f"floor: paho consume + manual ack only, MQTT 5, one process, n={n_msgs:,}", cell("paho5")),
            (f"floor, same with MQTT 3.1.1 (no per-message MQTT 5 properties), n={n_msgs:,}", cell("paho311")),
            (f"floor: the ingest's consumer (broker/mqtt/consumer.py) + batched acks, MQTT 5, n={n_msgs:,}",
             cell("lean")),
            (f"ingest, one worker in-process (IngestService), n={n_msgs:,}",
             f"**{ingest_best:.1f} µs CPU per rating** (target <= 60), "
             f"{ingest_best / paho_best:.2f} x the paho ack-only floor of the same run; " + cell("ingest")),
        ]
        print("| what | result |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows))
        if args.rows is not None:
            with args.rows.open("a", encoding="utf-8") as fh:
                for what, result in rows:
                    fh.write(json.dumps({"what": what, "result": result}, ensure_ascii=False) + "\n")
        if args.profile:
            profile(args, broker, slots, conn)
    finally:
        broker.stop()
        influx.stop()


if __name__ == "__main__":
    main()
