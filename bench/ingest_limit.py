"""Issue 14 in one command: every ingest benchmark once, one markdown table at the end.

Runs, each as its own process with its own Mosquitto and InfluxDB (so one cannot slow the next):

1. bench/ingest_throughput.py  (a) raw paho, (a') raw with the ingest's consumer, (b) `hailong ingest run`,
   (c) Node-RED, same run;
2. bench/ingest_throughput.py --drain DxP  the backlog drain, exactly once, time to drain;
3. bench/ingest_latency.py  tap -> InfluxDB p50/p99 at a background load;
4. bench/ingest_cpu.py  CPU per rating in one worker and the floors (paho, the ingest's consumer), best of 3
   (+ py-spy with --profile).

    python bench/ingest_limit.py                                  # the issue's sizes
    python bench/ingest_limit.py -n 20000 --drain 200x200 --probes 200 --cpu-ratings 20000   # a trial
    python bench/ingest_limit.py --workers auto --profile

Every step has a time limit (--step-timeout); a step that fails or times out gets a FAILED row
and the next one still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50_000, help="ratings for (a) and (b)")
    ap.add_argument("--nodered-n", type=int, default=20_000)
    ap.add_argument("--drain", default="1000x1000", help="DEVICESxPER_DEVICE, or '' to skip")
    ap.add_argument("--probes", type=int, default=500, help="latency probes ('0' skips)")
    ap.add_argument("--rate", type=float, default=1000, help="background ratings/s for the latency run")
    ap.add_argument("--cpu-ratings", type=int, default=20_000, help="ratings for the in-process CPU run")
    ap.add_argument("--workers", default=None, help="set `workers` (auto or N) for every ingest run")
    ap.add_argument("--profile", action="store_true", help="py-spy flame graph (bench/out/flame.svg)")
    ap.add_argument("--step-timeout", type=float, default=1800, help="seconds per step")
    args = ap.parse_args()
    rows_file = Path(tempfile.mkstemp(prefix="ingest-limit-", suffix=".jsonl")[1])
    workers = ["--workers", args.workers] if args.workers else []
    steps = [("throughput", ["ingest_throughput.py", "-n", str(args.n), "--nodered-n", str(args.nodered_n),
                             *workers])]
    if args.drain:
        steps.append(("drain", ["ingest_throughput.py", "--drain", args.drain, *workers]))
    if args.probes:
        steps.append(("latency", ["ingest_latency.py", "--probes", str(args.probes), "--rate", str(args.rate),
                                  *workers]))
    steps.append(("cpu", ["ingest_cpu.py", "--ratings", str(args.cpu_ratings),
                          *(["--profile"] if args.profile else [])]))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    for name, cmd in steps:
        t0 = time.monotonic()
        print(f"== {name}: python bench/{' '.join(cmd)}", flush=True)
        try:
            proc = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:], "--rows", str(rows_file)],
                                  env=env, timeout=args.step_timeout)
            failed = f"exit code {proc.returncode}" if proc.returncode else ""
        except subprocess.TimeoutExpired:
            failed = f"timed out after {args.step_timeout:.0f} s"
        if failed:
            with rows_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"what": name, "result": f"FAILED: {failed}"}) + "\n")
        print(f"== {name}: {time.monotonic() - t0:,.0f} s", flush=True)
    rows = [json.loads(line) for line in rows_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows_file.unlink()
    print("\n| run | result |\n|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['result']} |")


if __name__ == "__main__":
    main()
