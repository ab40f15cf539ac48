"""Ingest throughput: raw paho QoS1 vs hailong ingest vs Node-RED, same broker and InfluxDB, one run.

Every mode drains the SAME kind of backlog: N ratings published into the consumer's persistent
session while it is offline, then the consumer starts and we time first -> last message handled:

  (a) raw   a paho QoS1 subscriber that only counts messages (the ceiling for any MQTT consumer);
  (b) ingest  `hailong ingest run` (registry check, ticket rules, batching, acked after the durable
            InfluxDB write); done = every rating point is in InfluxDB;
  (c) nodered Node-RED 4: mqtt in (QoS1) -> function -> influxdb out (node-red-contrib-influxdb);
            done = every point is in InfluxDB. Node-RED acks on receipt, before the write.

Plus a Mosquitto settings sweep for (b), and the backlog drain (devices x per-device ratings,
exactly-once checked). Own Mosquitto 2.0.11 and InfluxDB 1.6.7 in bench/out/. Loopback only.

    python bench/ingest_throughput.py                      # throughput + settings sweep
    python bench/ingest_throughput.py --drain 1000x1000    # backlog drain, 1M ratings
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.kernel.mqtt import MqttSettings
from broker.kernel.session import MqttSession
from hailong.localstack import InfluxServer, MosquittoServer, free_port
from ingest.influxql import InfluxQL

OUT = Path(__file__).resolve().parent / "out"
NODERED = OUT / "nodered"
BASE_MS = 1_790_000_000_000  # fixed rated_at base: every run writes identical points


@dataclass
class Broker(MosquittoServer):
    overrides: dict[str, str] | None = None

    def default_conf(self) -> str:
        lines = super().default_conf().splitlines()
        for key, value in (self.overrides or {}).items():
            lines = [f"{key} {value}" if ln.startswith(key + " ") else ln for ln in lines]
        return "\n".join(lines) + "\n"


def settings_for(broker: MosquittoServer) -> MqttSettings:
    return local_settings(broker.port, broker.username, broker.password)


def local_settings(port: int, user: str, pw: str) -> MqttSettings:
    return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{port}", "username": user, "password": pw})


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


def ratings(slots: list[tuple[str, str, str]], per_device: int) -> list[tuple[str, bytes]]:
    msgs = []
    for n in range(per_device):
        for centre, device, counter in slots:
            rated = BASE_MS + n * 1000
            doc = {"v": 1, "event_id": str(uuid.uuid4()), "seq": n, "device": device, "centre": centre,
                   "counter": counter, "officer": "cb1", "ticket": f"A-{n}", "service": "ho-tich", "dossier": None,
                   "scale": 4, "score": 4 - n % 4, "reasons": [], "input": "touch", "closed_at": rated - 900,
                   "rated_at": rated, "sent_at": rated + 50, "boot_id": "bench", "mono_ms": n * 1000}
            msgs.append((f"hl/v1/{centre}/{device}/rating", json.dumps(doc).encode()))
    return msgs


def publish(settings: MqttSettings, msgs: list[tuple[str, bytes]], clients: int = 4) -> float:
    """Publish at QoS 1 from ``clients`` connections; return msgs/s once the broker acked all."""
    t0 = time.monotonic()
    pubs = []
    for i in range(clients):
        c = MqttSession(settings, f"bench-pub-{i}-{uuid.uuid4().hex[:6]}", max_inflight=1000).start()
        if not c.wait_connected(30):
            raise RuntimeError(f"bench publisher could not connect to {settings.url}")
        pubs.append(c)
    # paho mids are 16-bit per client: never have more than ~60k un-acked publishes on one client
    chunk = 50_000 * clients
    for start in range(0, len(msgs), chunk):
        part = msgs[start:start + chunk]
        infos = [pubs[i % clients].publish(t, p) for i, (t, p) in enumerate(part)]
        for info in infos:
            info.wait_for_publish(timeout=600)
    for c in pubs:
        c.stop()
    return len(msgs) / (time.monotonic() - t0)


# --------------------------------------------------------------------------- (a) raw paho (one MqttSession)

def _raw_consumer(port: int, user: str, pw: str, client_id: str, n: int, result: mp.Queue) -> None:
    """n == 0: just create the persistent session and its subscription; else count n messages."""
    got = 0
    first = last = 0.0

    def on_message(_m: object) -> None:
        nonlocal got, first, last
        got += 1
        last = time.monotonic()
        if got == 1:
            first = last

    c = MqttSession(local_settings(port, user, pw), client_id, subscriptions=[("$share/raw/hl/v1/+/+/rating", 1)],
                    session_expiry_s=3600, receive_maximum=2000, on_message=on_message).start()
    deadline = time.monotonic() + 600
    if n == 0:
        c.subscribed.wait(30)
    while got < n and time.monotonic() < deadline:
        time.sleep(0.01)
    c.stop()
    result.put((got, first, last))


def run_raw(broker: MosquittoServer, msgs: list[tuple[str, bytes]]) -> float:
    q: mp.Queue = mp.Queue()
    cid = f"raw-{uuid.uuid4().hex[:6]}"
    args = (broker.port, broker.username, broker.password, cid)
    p = mp.Process(target=_raw_consumer, args=(*args, 0, q))
    p.start()
    q.get(timeout=30)
    p.join()
    publish(settings_for(broker), msgs)
    p = mp.Process(target=_raw_consumer, args=(*args, len(msgs), q))
    p.start()
    got, first, last = q.get(timeout=620)
    p.join()
    assert got >= len(msgs), f"raw consumer got {got} of {len(msgs)}"
    return len(msgs) / (last - first)


# --------------------------------------------------------------------------- (b) hailong ingest

def count(db: InfluxQL, measurement: str = "rating") -> int:
    return int(db.scalar(f'SELECT count("score") FROM "{measurement}"') or 0)


def wait_progress(read: Callable[[], int], n: int, timeout: float, stall_s: float = 15) -> tuple[float, float]:
    """Poll ``read()`` until it reaches ``n``; return (time it first moved, time it reached n).
    Raises RuntimeError when it stops moving for ``stall_s``."""
    first = 0.0
    deadline = time.monotonic() + timeout
    last_v, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        v = read()
        now = time.monotonic()
        if v and not first:
            first = now
        if v >= n:
            return first, now
        if v != last_v:
            last_v, last_change = v, now
        elif first and now - last_change > stall_s:
            break
        time.sleep(0.02)
    raise RuntimeError(f"stalled at {last_v} of {n}")


def wait_count(db: InfluxQL, n: int, timeout: float) -> tuple[float, float]:
    return wait_progress(lambda: count(db), n, timeout)


def healthz_acked(port: int) -> int:
    """Messages the ingest acked, i.e. durably written (cheap, unlike counting points in InfluxDB)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(json.loads(r.read())["acked"])
    except OSError:
        return 0


def ingest_proc(workdir: Path, broker: MosquittoServer, influx: InfluxServer, db: str, fleet: Path,
                client_id: str, batch: int = 1000, in_flight: int = 5000, health_port: int = 0,
                group: str = "bench") -> subprocess.Popen[bytes]:
    conf = workdir / f"{client_id}.toml"
    conf.write_text(f"""client_id = "{client_id}"
share_group = "{group}"
registry = "{fleet}"
[mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
username = "{broker.username}"
keepalive_s = 60
[influx]
url = "{influx.url}"
api = "v1"
database = "{db}"
[batch]
size = {batch}
max_delay_ms = 100
max_in_flight = {in_flight}
[integrity]
index_lookback_s = 60
[clock]
max_age_s = {20 * 365 * 86400}
[health]
http_port = {health_port}
""", encoding="utf-8")
    env = dict(os.environ, HAILONG_INGEST__MQTT__PASSWORD=broker.password)
    log = open(workdir / f"{client_id}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "hailong.cli", "ingest", "run", "--config", str(conf)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_ingest(workdir: Path, broker: MosquittoServer, influx: InfluxServer, fleet: Path,
               msgs: list[tuple[str, bytes]], timeout: float = 1800, instances: int = 1,
               **kw: Any) -> tuple[float, InfluxQL]:
    """Drain ``msgs`` from the persistent session(s) of ``instances`` ingest processes on one share group."""
    db = InfluxQL(influx.url, f"b_{uuid.uuid4().hex[:8]}")
    db.create_database()
    cids = [f"ingest-{uuid.uuid4().hex[:6]}" for _ in range(instances)]
    # a fresh share group per run: the offline sessions of earlier runs are still members of theirs,
    # and Mosquitto would route them a share of this run's messages
    kw["group"] = f"bench{uuid.uuid4().hex[:6]}"
    for cid in cids:  # create the persistent session and its subscriptions, then go offline
        p = ingest_proc(workdir, broker, influx, db.database, fleet, cid, **kw)
        deadline = time.monotonic() + 30
        while "connected to" not in (workdir / f"{cid}.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(p)
    publish(settings_for(broker), msgs)
    ports = [free_port() for _ in cids]
    procs = [ingest_proc(workdir, broker, influx, db.database, fleet, cid, health_port=port, **kw)
             for cid, port in zip(cids, ports, strict=True)]
    try:
        first, last = wait_progress(lambda: sum(healthz_acked(p) for p in ports), len(msgs), timeout)
        # acks also count redeliveries after a reconnect: the stored points are the ground truth
        _, stored_at = wait_count(db, len(msgs), timeout)
        last = max(last, stored_at)
    finally:
        for p in procs:
            stop(p)
    return len(msgs) / (last - first), db


def exactly_once(db: InfluxQL, msgs: list[tuple[str, bytes]]) -> bool:
    """Every event_id stored, and exactly as many points as ratings (read in 100 s time slices)."""
    want = {json.loads(p)["event_id"] for _, p in msgs}
    stored: list[str] = []
    last_ms = max(json.loads(p)["rated_at"] for _, p in msgs[-1000:])
    for t0 in range(BASE_MS, last_ms + 1, 100_000):
        stored += [r["event_id"] for r in db.rows(
            f'SELECT "event_id" FROM "rating" WHERE time >= {t0}ms AND time < {t0 + 100_000}ms')]
    return len(stored) == len(want) and set(stored) == want


# --------------------------------------------------------------------------- (c) Node-RED

FUNCTION = """const r = msg.payload;
msg.payload = [{score: r.score, scale: r.scale, ticket: r.ticket || "", event_id: r.event_id, time: r.rated_at},
               {centre: r.centre, counter: r.counter, officer: r.officer, device: r.device}];
return msg;"""


def run_nodered(workdir: Path, broker: MosquittoServer, influx: InfluxServer,
                msgs: list[tuple[str, bytes]]) -> str:
    red = NODERED / "node_modules" / "node-red" / "red.js"
    if not red.exists() or shutil.which("node") is None:
        return "not installed (cd bench/out/nodered && npm install node-red@4 node-red-contrib-influxdb)"
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

    def start() -> subprocess.Popen[bytes]:
        log = open(user_dir / "node-red.log", "ab")  # noqa: SIM115
        return subprocess.Popen(["node", str(red), "--userDir", str(user_dir), "--settings",
                                 str(user_dir / "settings.js")], stdout=log, stderr=subprocess.STDOUT)

    # Live, not a backlog: restarted with a queued backlog, Node-RED 4 wrote nothing (see RESULTS.md).
    p = start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "nr-bench" not in broker.logs():
            time.sleep(0.2)
        time.sleep(3)  # flows started, subscription made
        t0 = time.monotonic()
        publish(settings_for(broker), msgs)
        try:
            _, last = wait_count(db, len(msgs), 900)
        except RuntimeError:
            last = time.monotonic() - 15  # the stall detector waited 15 s after the last new point
    finally:
        stop(p)
    stored = count(db)
    errors = (user_dir / "node-red.log").read_text(errors="replace").count("[error] [influxdb out")
    return (f"{stored / (last - t0):,.0f} ratings/s stored; {stored} of {len(msgs)} stored, "
            f"{len(msgs) - stored} LOST ({errors} influxdb-out errors; Node-RED acks on receipt)")


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="ratings per throughput run")
    ap.add_argument("--nodered-n", type=int, default=20_000, help="ratings for the Node-RED run")
    ap.add_argument("--sweep-n", type=int, default=10_000, help="ratings per Mosquitto-settings run")
    ap.add_argument("--drain", default="", help="DEVICESxPER_DEVICE backlog drain instead, e.g. 1000x1000")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=OUT))
    influx = InfluxServer(workdir / "influx").start()
    servers: list[MosquittoServer | InfluxServer] = [influx]
    try:
        if args.drain:
            devices, per = (int(x) for x in args.drain.split("x"))
            broker = Broker(workdir / "mosq").start()
            servers.append(broker)
            fleet_slots = write_fleet(workdir / "fleet", max(1, devices // 100), min(devices, 100))
            msgs = ratings(fleet_slots[:devices], per)
            t0 = time.monotonic()
            rate, db = run_ingest(workdir, broker, influx, workdir / "fleet", msgs, timeout=7200)
            print(f"drain {devices}x{per} = {len(msgs)}: {rate:,.0f} ratings/s, "
                  f"{len(msgs) / rate:,.0f} s drain ({time.monotonic() - t0:,.0f} s incl. publish); "
                  f"exactly once: {exactly_once(db, msgs)}")
            return
        slots = write_fleet(workdir / "fleet", 2, 50)
        broker = Broker(workdir / "mosq").start()
        servers.append(broker)
        msgs = ratings(slots, max(1, args.n // len(slots)))
        raw = run_raw(broker, msgs)
        print(f"(a) raw paho QoS1 pass-through: {raw:,.0f} msg/s  (n={len(msgs)})")
        ing, db = run_ingest(workdir, broker, influx, workdir / "fleet", msgs)
        print(f"(b) hailong ingest, acked after durable write: {ing:,.0f} ratings/s  "
              f"(exactly once: {exactly_once(db, msgs)}); (b)/(a) = {ing / raw:.2f}")
        ing2, db = run_ingest(workdir, broker, influx, workdir / "fleet", msgs, instances=2)
        print(f"(b2) two hailong ingest instances on one $share group: {ing2:,.0f} ratings/s  "
              f"(exactly once: {exactly_once(db, msgs)}); (b2)/(a) = {ing2 / raw:.2f}")
        nr_msgs = msgs[: args.nodered_n]
        print(f"(c) Node-RED 4 mqtt in -> function -> influxdb out (live, n={len(nr_msgs)}): "
              f"{run_nodered(workdir, broker, influx, nr_msgs)}")
        sweep = msgs[: args.sweep_n]
        for name, overrides in (
            ("as rendered: max_inflight_messages 0, set_tcp_nodelay true, max_queued_messages 0", {}),
            ("max_inflight_messages 20 (default)", {"max_inflight_messages": "20"}),
            ("set_tcp_nodelay false (default)", {"set_tcp_nodelay": "false"}),
            ("max_queued_messages 1000 (default)", {"max_queued_messages": "1000"}),
        ):
            b = Broker(workdir / f"mosq-{uuid.uuid4().hex[:4]}", overrides=overrides).start()
            servers.append(b)
            try:
                rate, db = run_ingest(workdir, b, influx, workdir / "fleet", sweep, timeout=120)
                print(f"sweep {name}: {rate:,.0f} ratings/s (n={len(sweep)}, exactly once: "
                      f"{exactly_once(db, sweep)})")
            except RuntimeError as exc:
                print(f"sweep {name}: {exc}")
            b.stop()
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
