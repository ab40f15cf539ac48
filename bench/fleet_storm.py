"""Fleet storm: a province of terminals after a broker restart (issue 20).

    python bench/fleet_storm.py --terminals 2000 [--per-proc 25 --down-s 30 --queued 20]

The product's own parts, on loopback:
- the broker config ``hailong broker render`` writes for a synthetic fleet (TLS password
  listener, persistence, the rendered queue limits), run by the Debian mosquitto;
- the real ingest, ``hailong ingest run`` with its defaults (workers = "auto", each worker its
  own user and secret) but for connection details, writing to a real InfluxDB 1.6.7;
- N terminals, each the terminal's own :class:`device.link.DeviceLink` draining its own
  :class:`device.outbox.Outbox` (SQLite, WAL, synchronous=FULL), with the reconnect settings
  the terminal's config has by default. ``--per-proc`` terminals per process (default 25). A
  terminal is three threads (paho's network loop, the outbox drain, the heartbeat) and on a Pi it
  has an interpreter to itself; here a process's threads share one GIL. At 100 terminals per
  process (300 threads contending for one GIL, 20 processes) the simulator itself burnt both cores
  (load average 500-600, 186 % CPU for the terminals, the broker at 2 %) and the fleet it
  simulated could not even run its reconnect timers; at 25 per process the same work fits.
  paho waits in select(), which takes no descriptor above 1,023; a terminal holds about nine (its
  MQTT socket, paho's wake-up socket pair, two SQLite connections with their WAL and shm files), so
  --per-proc stays under 110.

What it does: all terminals connect; the broker is stopped (SIGTERM: it saves its sessions);
while it is down every terminal commits ``--queued`` ratings to its outbox; after ``--down-s``
the broker starts again on the same port. From the moment it listens again it measures the
share of terminals connected over time, every TCP connect / TLS handshake attempt (outcome and
time, recorded inside each terminal process around paho's socket creation), the kernel's
listen-queue overflows, when every rating was stored and that each was stored exactly once,
and the broker's CPU and RSS. Results print as Markdown (bench/RESULTS.md has the runs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_common import cpu_s, rss_mb, write_fleet

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from broker.mosquitto.render import RenderOptions, render_broker
from hailong.localstack import InfluxServer, MosquittoServer, free_port, stop_process
from ingest.workers import resolve_workers
from storage.influxql import InfluxQL, InfluxQueryError

COUNTERS_PER_CENTRE = 50


# --------------------------------------------------------------------------- terminal processes

def _instrument_paho(attempts: list[tuple[float, str, float]]) -> None:
    """Record every TCP connect + TLS handshake paho makes: (wall time, outcome, seconds it took)."""
    import paho.mqtt.client as mqtt

    create = mqtt.Client._create_socket

    def timed(self: Any) -> Any:
        t0 = time.time()
        try:
            sock = create(self)
        except ConnectionRefusedError:
            attempts.append((t0, "refused", time.time() - t0))
            raise
        except TimeoutError:
            # the TCP connect or the TLS handshake ran past connect_timeout_s
            attempts.append((t0, "timeout", time.time() - t0))
            raise
        except ssl.SSLError:
            attempts.append((t0, "tls_error", time.time() - t0))
            raise
        except OSError:
            attempts.append((t0, "other", time.time() - t0))
            raise
        attempts.append((t0, "ok", time.time() - t0))
        return sock

    mqtt.Client._create_socket = timed  # type: ignore[method-assign]


def terminal_process(terms: list[tuple[str, str, str, str]], url: str, ca: str, root: str, queued: int,
                     conn: Any) -> None:
    """Run ``terms`` terminals (centre, device, counter, password); obey "queue" / "stop"; report samples."""
    import logging

    from broker.mqtt.settings import MqttSettings
    from device.link import DeviceLink
    from device.outbox import Outbox
    from device.state import RatingDraft

    logging.basicConfig(level=logging.ERROR)
    # On a province the terminals are Pis of their own; here they share the cores with the broker, the
    # ingest and InfluxDB. Niced, they get what the server side leaves, as they would on their own boxes.
    os.nice(10)
    attempts: list[tuple[float, str, float]] = []
    _instrument_paho(attempts)
    outboxes = [Outbox(Path(root) / f"{d}.sqlite3", device=d, centre=c, counter=q, boot_id="storm")
                for c, d, q, _ in terms]
    links = []
    for (c, d, q, pw), ob in zip(terms, outboxes, strict=True):
        settings = MqttSettings.model_validate({"url": url, "username": d, "password": pw, "ca_file": ca})
        links.append(DeviceLink(settings, device=d, centre=c, counter=q, outbox=ob, heartbeat_s=60).start())
    while True:
        if conn.poll(0.2):
            cmd = conn.recv()
            if cmd == "queue":
                now = int(time.time() * 1000)
                for (_c, d, _q, _pw), ob, link in zip(terms, outboxes, links, strict=True):
                    for i in range(queued):
                        ob.commit(RatingDraft(officer="cb1", ticket=f"{d}-{i}", service="ho-tich", dossier=None,
                                              closed_at=now - 900 + i, scale=4, score=4 - i % 4, reasons=(),
                                              input="touch", rated_at=now + i, mono_ms=1000 + i))
                    link.kick()
                conn.send(("queued", len(terms) * queued))
            elif cmd == "stop":
                for link in links:
                    link.session.client.disconnect()
                conn.send(("attempts", attempts, sum(link.acked for link in links),
                           sum(o.depth for o in outboxes)))
                return
        conn.send(("sample", time.time(), sum(1 for link in links if link.connected.is_set()),
                   sum(link.acked for link in links)))


# --------------------------------------------------------------------------- the server side

def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs the kernel dropped because a listen queue was full (all sockets)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split()[1:], vals.split()[1:], strict=True))["ListenOverflows"])
    return 0


def ingest_toml(path: Path, fleet: Path, out: Path, state: FleetState, port: int, influx: InfluxServer,
                db: str, health_port: int) -> None:
    """The ingest with its defaults (workers = "auto", reconnect, batch) but for connection details."""
    path.write_text(f"""registry = "{fleet}"
worker_secrets_dir = "{state.root / 'secrets'}"
[mqtt]
url = "mqtts://127.0.0.1:{port}"
username = "svc.ingest"
ca_file = "{out / 'ca.crt'}"
[influx]
url = "{influx.url}"
api = "v1"
database = "{db}"
[health]
http_port = {health_port}
""", encoding="utf-8")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(json.loads(r.read()).get("alive"))
    except (OSError, urllib.error.HTTPError, ValueError):
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--terminals", type=int, default=2000)
    ap.add_argument("--per-proc", type=int, default=25,
                    help="terminals per process (each process has one GIL; <= 110 for select())")
    ap.add_argument("--down-s", type=float, default=30.0, help="how long the broker stays down")
    ap.add_argument("--queued", type=int, default=20, help="ratings each terminal commits while it is down")
    ap.add_argument("--timeout-s", type=float, default=180.0, help="give up recovery after this long")
    a = ap.parse_args()
    if not 1 <= a.per_proc <= 110:
        ap.error(f"--per-proc {a.per_proc}: 1..110 (paho's select() takes no descriptor above 1,023)")
    run = Path(tempfile.mkdtemp(prefix="hl-fleet-storm-"))  # logs kept on failure, removed on success
    centres = -(-a.terminals // COUNTERS_PER_CENTRE)
    slots = write_fleet(run / "fleet", centres, COUNTERS_PER_CENTRE)[: a.terminals]
    keep = {d for _, d, _ in slots}
    (run / "fleet" / "devices.toml").write_text("\n".join(
        f'[device.{d}]\ncentre = "{c}"\ncounter = "{q}"\n' for c, d, q in slots), encoding="utf-8")
    state = FleetState.for_fleet(run / "fleet").ensure()
    t0 = time.monotonic()
    passwords = {d: state.password(d) for d in sorted(keep)}
    print(f"credentials for {len(passwords)} terminals in {time.monotonic() - t0:.0f} s", flush=True)
    workers = resolve_workers("auto")
    out = run / "broker"
    (out / "data").mkdir(parents=True)
    opt = RenderOptions(bind="127.0.0.1", tls_port=free_port(), cert_port=free_port(), conf_dir=str(out),
                        data_dir=str(out / "data"), log_dest=f"file {run}/mosquitto.log",
                        run_as="root" if os.geteuid() == 0 else None, ingest_workers=max(4, workers))
    render_broker(load_registry(run / "fleet"), state, out, opt)
    broker = MosquittoServer(run / "mq", port=opt.tls_port, conf_text=(out / "mosquitto.conf").read_text())
    influx = InfluxServer(run / "influx").start()
    db = InfluxQL(influx.url, "storm")
    db.create_database()
    ok = False
    ing: subprocess.Popen[bytes] | None = None
    procs: list[tuple[Any, Any]] = []
    # each terminal has its own SD card; 2,000 outboxes fsyncing on this VM's one disk would measure the
    # disk, not the restart: the outboxes live in tmpfs (same SQLite code, WAL, synchronous=FULL)
    outboxes = Path("/dev/shm") / run.name
    try:
        broker.start()
        health_port = free_port()
        ingest_toml(run / "ingest.toml", run / "fleet", out, state, opt.tls_port, influx, "storm", health_port)
        env = dict(os.environ, HAILONG_INGEST__MQTT__PASSWORD=state.password("svc.ingest"))
        ing = subprocess.Popen([sys.executable, "-m", "hailong.cli", "ingest", "run", "--config",
                                str(run / "ingest.toml")], env=env, stdout=open(run / "ingest.log", "ab"),  # noqa: SIM115
                               stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not healthy(health_port):
            if time.monotonic() > deadline or ing.poll() is not None:
                raise RuntimeError(f"ingest not ready; see {run / 'ingest.log'}")
            time.sleep(0.5)
        ctx = mp.get_context("spawn")
        url = f"mqtts://127.0.0.1:{opt.tls_port}"
        for k in range(0, len(slots), a.per_proc):
            part = [(c, d, q, passwords[d]) for c, d, q in slots[k:k + a.per_proc]]
            parent, child = ctx.Pipe()
            p = ctx.Process(target=terminal_process, args=(part, url, str(out / "ca.crt"),
                                                           str(outboxes), a.queued, child), daemon=True)
            p.start()
            procs.append((p, parent))
            time.sleep(0.5)  # a power-on is spread by boot times; this bench measures the restart
        latest = [0] * len(procs)
        acked_by = [0] * len(procs)  # ratings the broker PUBACKed (deleted from the outboxes)

        def poll(timeout: float = 0.0) -> list[tuple[Any, ...]]:
            other = []
            for i, (_p, conn) in enumerate(procs):
                while conn.poll(timeout):
                    msg = conn.recv()
                    if msg[0] == "sample":
                        latest[i], acked_by[i] = msg[2], msg[3]
                    else:
                        other.append(msg)
            return other

        deadline = time.monotonic() + 300
        while sum(latest) < len(slots):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {sum(latest)} of {len(slots)} terminals connected at start")
            poll()
            time.sleep(0.2)
        print(f"{len(slots)} terminals connected in {len(procs)} processes; steady state 10 s", flush=True)
        assert broker.proc is not None
        c0, t_s = cpu_s(broker.proc.pid), time.monotonic()
        time.sleep(10)
        poll()
        steady_cpu = (cpu_s(broker.proc.pid) - c0) / (time.monotonic() - t_s) * 100
        steady_rss = rss_mb(broker.proc.pid)
        overflows0 = listen_overflows()

        t_stop = time.time()
        broker.stop()  # SIGTERM: persistence saved, every terminal loses its connection
        for _p, conn in procs:
            conn.send("queue")
        queued = 0
        while queued < len(slots) * a.queued:
            for msg in poll(0.05):
                if msg[0] == "queued":
                    queued += msg[1]
        t_queued = time.time() - t_stop
        time.sleep(max(0.0, t_stop + a.down_s - time.time()))
        broker.start()  # returns once the password listener accepts
        t_listen = time.time()
        pid = broker.proc.pid
        cpu0 = cpu_s(pid)
        others0 = (cpu_s(ing.pid), sum(cpu_s(p.pid) for p, _ in procs))
        timeline: list[tuple[float, int, int, int]] = []  # (s after listen, connected, stored, PUBACKed)
        acked0 = sum(acked_by)
        peak_rss = rss_mb(pid)
        expected = len(slots) * a.queued
        stored, t_all_conn, t_all_stored = 0, None, None
        last_q = 0.0
        while time.time() - t_listen < a.timeout_s:
            poll(0.02)
            now = time.time() - t_listen
            if now - last_q >= 0.5:
                last_q = now
                try:
                    stored = int(db.scalar('SELECT count("score") FROM "rating"') or 0)
                except InfluxQueryError as exc:  # InfluxDB busy with the backlog's writes: count again next time
                    print(f"count query at +{now:.1f} s failed ({exc}); retried", file=sys.stderr)
                peak_rss = max(peak_rss, rss_mb(pid))
            timeline.append((now, sum(latest), stored, sum(acked_by) - acked0))
            if t_all_conn is None and sum(latest) >= len(slots):
                t_all_conn = now
            if t_all_stored is None and stored >= expected:
                t_all_stored = now
            if t_all_conn is not None and t_all_stored is not None:
                break
            time.sleep(0.2)
        busy_s = time.time() - t_listen
        recovery_cpu = (cpu_s(pid) - cpu0) / busy_s * 100
        others = ((cpu_s(ing.pid) - others0[0]) / busy_s * 100,
                  (sum(cpu_s(p.pid) for p, _ in procs) - others0[1]) / busy_s * 100)
        load = os.getloadavg()[0]
        overflows = listen_overflows() - overflows0
        time.sleep(2)  # a straggling redelivery would land now
        points = int(db.scalar('SELECT count("score") FROM "rating"') or 0)
        distinct = int(db.scalar('SELECT count(distinct("event_id")) FROM "rating"') or 0)
        rejected = int(db.scalar('SELECT count("payload") FROM "rejected"') or 0)
        attempts: list[tuple[float, str, float]] = []
        acked = left = 0
        for _p, conn in procs:
            conn.send("stop")
        for _p, conn in procs:
            while True:
                msg = conn.recv()
                if msg[0] == "attempts":
                    attempts += msg[1]
                    acked += msg[2]
                    left += msg[3]
                    break
        report(a, len(slots), len(procs), workers, steady_cpu, steady_rss, t_queued, timeline, t_all_conn,
               t_all_stored, expected, points, distinct, rejected, left, attempts, t_stop, t_listen, overflows,
               recovery_cpu, busy_s, peak_rss, others, load)
        ok = True
    finally:
        for p, _conn in procs:
            if p.is_alive():
                p.kill()
        if ing is not None:
            ing.send_signal(signal.SIGTERM)
            try:
                ing.wait(60)
            except subprocess.TimeoutExpired:
                ing.kill()
        broker.stop()
        stop_process(influx.proc)
        shutil.rmtree(outboxes, ignore_errors=True)
        shutil.rmtree(run / "influx", ignore_errors=True)
        if ok:
            shutil.rmtree(run, ignore_errors=True)
        else:
            print(f"logs kept in {run}", file=sys.stderr)


def report(a: argparse.Namespace, n: int, nprocs: int, workers: int, steady_cpu: float, steady_rss: float,
           t_queued: float, timeline: list[tuple[float, int, int, int]], t_all_conn: float | None,
           t_all_stored: float | None, expected: int, points: int, distinct: int, rejected: int, left: int,
           attempts: list[tuple[float, str, float]], t_stop: float, t_listen: float, overflows: int,
           recovery_cpu: float, busy_s: float, peak_rss: float, others: tuple[float, float], load: float) -> None:
    def at(s: float) -> tuple[int, int, int]:
        row = next((r for r in timeline if r[0] >= s), timeline[-1])
        return row[1], row[2], row[3]

    after = [x for x in attempts if x[0] >= t_listen]
    outcomes = Counter(o for _, o, _ in after)
    down = Counter(o for t, o, _ in attempts if t_stop <= t < t_listen)
    per_s = Counter(int(t - t_listen) for t, _, _ in after)
    per_s_down = Counter(int(t - t_stop) for t, _, _ in attempts if t_stop <= t < t_listen)
    slowest = max((d for _, o, d in after if o == "ok"), default=0.0)
    fmt = lambda s: "not reached" if s is None else f"{s:.1f} s"  # noqa: E731
    print(f"\n## fleet storm: {n:,} terminals ({nprocs} processes), broker down {a.down_s:.0f} s, "
          f"{a.queued} ratings queued each; ingest workers {workers}")
    print("| measure | value |\n|---|---|")
    print(f"| steady state, broker | {steady_cpu:.1f} % of a core, {steady_rss:.0f} MB |")
    print(f"| {expected:,} ratings committed to the outboxes while down | in {t_queued:.1f} s |")
    print(f"| 100 % connected after the broker listens again | {fmt(t_all_conn)} |")
    print(f"| every rating stored | {fmt(t_all_stored)} |")
    print(f"| stored exactly once | {points:,} points, {distinct:,} distinct event ids of {expected:,}; "
          f"{rejected} rejected; {left} left in outboxes |")
    print(f"| attempts while down (refused) | {sum(down.values()):,} ({dict(down)}); busiest second "
          f"{max(per_s_down.values(), default=0)} |")
    print(f"| attempts after listen | {sum(outcomes.values()):,}: {dict(outcomes)} |")
    print(f"| TCP/TLS attempts timing out after listen | {outcomes.get('timeout', 0)} |")
    print(f"| attempts per second after listen (busiest) | {max(per_s.values(), default=0)} |")
    print(f"| slowest successful TCP+TLS connect | {slowest:.2f} s |")
    print(f"| kernel listen-queue overflows (whole run window) | {overflows:,} |")
    print(f"| broker during recovery ({busy_s:.0f} s) | {recovery_cpu:.0f} % of a core, peak RSS {peak_rss:.0f} MB |")
    print(f"| ingest / the {nprocs} terminal processes during recovery | {others[0]:.0f} % / {others[1]:.0f} % "
          f"of a core |")
    print(f"| machine load average at the end (2 cores, shared) | {load:.1f} |")
    print("\n| s after listen | connected | PUBACKed to the terminals | stored | attempts in that second |\n"
          "|---|---|---|---|---|")
    for s in (1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40):
        if timeline and timeline[-1][0] >= s - 1:
            c, st, ak = at(s)
            print(f"| {s} | {c / n:.1%} ({c:,}) | {ak / expected:.1%} ({ak:,}) | {st / expected:.1%} ({st:,}) | "
                  f"{per_s.get(s - 1, 0)} |")


if __name__ == "__main__":
    main()
