"""CPU per rating inside one ingest worker, measured in-process (issue 14's 60 µs target).

Publishes N ratings (the throughput benchmark's payload mix) into a persistent session while
the ingest is offline, then runs ``IngestService`` IN THIS PROCESS and measures the process's
CPU time (all threads: paho's network thread, the judge, the writer) from the first message
to the last point stored, divided by N. That is the CPU one worker spends per rating, MQTT
parsing and PUBACKs and the InfluxDB HTTP write included. InfluxDB and Mosquitto run in their
own processes and are not counted.

    python bench/ingest_cpu.py                   # 20,000 ratings
    python bench/ingest_cpu.py --profile top.txt # plus a yappi profile of every thread (top 40)

Own Mosquitto 2.0.11 and InfluxDB 1.6.7 under bench/out/; loopback only.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_throughput import OUT, publish, ratings, settings_for, write_fleet

from hailong.localstack import InfluxServer, MosquittoServer
from ingest.config import IngestConfig
from ingest.influxql import InfluxQL
from ingest.service import IngestService


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def config(broker: MosquittoServer, influx: InfluxServer, db: str, fleet: Path, uid: str) -> IngestConfig:
    return IngestConfig.model_validate({
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                 "password": broker.password},
        "influx": {"url": influx.url, "api": "v1", "database": db},
        "client_id": f"hl-ingest-cpu-{uid}", "share_group": f"cpu{uid}", "registry": str(fleet),
        "clock": {"max_age_s": 20 * 365 * 86_400},
        "batch": {"size": 1000, "max_delay_ms": 100, "max_in_flight": 2000},
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=20_000)
    ap.add_argument("--profile", type=Path, default=None, help="write a yappi top-40 (all threads) here")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cpu-", dir=OUT))
    broker = MosquittoServer(work / "mqtt").start()
    influx = InfluxServer(work / "influx").start()
    try:
        uid = uuid.uuid4().hex[:6]
        db = f"cpu{uid}"
        qdb = InfluxQL(influx.url, db)
        qdb.query(f'CREATE DATABASE "{db}"')
        slots = write_fleet(work / "fleet", 1, 100)
        msgs = ratings(slots, args.ratings // len(slots))
        cfg = config(broker, influx, db, work / "fleet", uid)
        svc = IngestService(cfg).start()  # creates the persistent session and subscription
        svc.stop()
        publish(settings_for(broker), msgs)
        if args.profile:
            import yappi

            yappi.set_clock_type("cpu")
            yappi.start(builtins=False)
        svc = IngestService(cfg)
        c0, t0 = cpu_s(), time.monotonic()
        svc.start()
        deadline = time.monotonic() + 600
        while svc.stats.acked < len(msgs) and time.monotonic() < deadline:
            time.sleep(0.02)
        c1, t1 = cpu_s(), time.monotonic()
        svc.stop()
        if args.profile:
            yappi.stop()
            stats = yappi.get_func_stats()
            stats.sort("ttot")
            with args.profile.open("w") as fh:
                stats.print_all(out=fh, columns={0: ("name", 90), 1: ("ncall", 9), 2: ("tsub", 8), 3: ("ttot", 8)})
        n = svc.stats.acked
        print(f"ratings acked: {n} of {len(msgs)} in {t1 - t0:.2f}s ({n / (t1 - t0):,.0f}/s)")
        print(f"process CPU: {c1 - c0:.2f}s = {(c1 - c0) / max(n, 1) * 1e6:.1f} µs per rating "
              f"(all threads of one worker; broker and InfluxDB not counted)")
    finally:
        broker.stop()
        influx.stop()


if __name__ == "__main__":
    main()
