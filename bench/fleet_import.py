"""Province rollout benchmark: ``fleet import`` of a province sheet, ``add-device`` against a big fleet,
``fleet provision --centre`` per terminal. Results print as Markdown rows for bench/RESULTS.md.

    python bench/fleet_import.py [--centres 40 --counters 50 --repeats 5 --rounds 3]

1. A sheet of centres x counters (one terminal and one officer per counter), imported with the real
   command (`hailong fleet import`, its own process): wall time, then the same sheet again (no-op).
2. The same sheet with 3 bad rows: refused whole, the line numbers it names.
3. `hailong fleet add-device` (its own process) on the example fleet and on the imported one; baseline
   in the same run: `move-device`, which still validates and rewrites the whole registry (what
   add-device did before), on the same fleets; and in-process, without interpreter start-up.
4. `hailong fleet provision --centre` in password and certificate mode, a fresh centre each round:
   ms per terminal from the total the command prints; the cloud-init user-data of one terminal
   rendered by PyYAML (the former way) vs the pre-encoded entries; one EC key + certificate issued
   sequentially vs on 2 threads.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from firmware_config.fleet_append import append_device
from firmware_config.fleetedit import new_device, update_device
from firmware_config.provision import ProvisionSettings, Run, bundle_files, user_data
from firmware_config.wheel import project_wheel

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("centre,centre_name,province,qms,walkup,counter,counter_label,services,device,hardware,pins,officer,"
          "officer_name")
HAILONG = [sys.executable, "-m", "hailong.cli", "fleet"]


def province_sheet(path: Path, centres: int, counters: int) -> Path:
    rows = [HEADER]
    for c in range(centres):
        cid = f"qn-{c:03d}"
        for q in range(1, counters + 1):
            head = (f"{cid},Trung tâm Phục vụ hành chính công phường số {c},quang-ninh,có,không" if q == 1
                    else f"{cid},,,,")
            rows.append(f"{head},q{q:02d},Quầy {q} – Đất đai,dat-dai,{cid}-q{q:02d},touch,,"
                        f"{cid}-cb{q:02d},Nguyễn Thị Lan {q}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def cli(fleet: Path, *args: str, ok: bool = True) -> tuple[float, str]:
    t = time.monotonic()
    res = subprocess.run([*HAILONG, "--fleet", str(fleet), *args], capture_output=True, text=True, cwd=ROOT)
    took = time.monotonic() - t
    if ok and res.returncode != 0:
        raise RuntimeError(f"hailong fleet {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return took, res.stdout + res.stderr


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def row(what: str, size: str, result: str) -> None:
    print(f"| {what} | {size} | {result} |", flush=True)


def bench_import(tmp: Path, centres: int, counters: int) -> Path:
    n = centres * counters
    sheet = province_sheet(tmp / "province.csv", centres, counters)
    fleet = tmp / "fleet"
    took, out = cli(fleet, "import", str(sheet))
    assert f"added {centres} centre(s), {n} counter(s), {n} terminal(s), {n} officer(s)" in out, out
    reg = load_registry(fleet)
    assert len(reg.active_devices()) == n and len(reg.officers) == n
    row("`fleet import` (target <= 10 s)", f"{centres} centres x {counters} counters: {n:,} terminals, "
        f"{n:,} officers, {n + 1:,} lines", f"**{took:.2f} s**")
    took, out = cli(fleet, "import", str(sheet))
    assert "nothing to import" in out, out
    row("`fleet import` of the same sheet again", "all rows already registered (no write)", f"{took:.2f} s")
    lines = sheet.read_text(encoding="utf-8").splitlines()
    for at in (12, 1001, n):  # 1-based line numbers of the rows made bad
        lines[at - 1] = lines[at - 1].replace(",touch,", ",buttons,")  # buttons without a pin map
    bad = tmp / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = {f: (fleet / f).read_bytes() for f in ("centres.toml", "devices.toml", "officers.toml")}
    other = tmp / "fresh"
    took, out = cli(other, "import", str(bad), ok=False)
    named = sorted({int(m) for m in re.findall(rf"{re.escape(str(bad))}:(\d+):", out)})
    assert named == [12, 1001, n] and not other.exists(), out
    assert before == {f: (fleet / f).read_bytes() for f in before}
    row("`fleet import`, 3 bad rows", f"{n:,} rows", f"refused whole in {took:.2f} s, names lines "
        f"{', '.join(map(str, named))}; nothing written")
    return fleet


def bench_add_device(tmp: Path, big: Path, repeats: int) -> None:
    small = tmp / "small"
    shutil.copytree(ROOT / "deploy" / "example-fleet", small)
    fleets = {"example fleet (6 terminals)": (small, "qn-tthc"),
              f"{len(load_registry(big).devices):,} terminals": (big, "qn-000")}
    adds: dict[str, list[float]] = {k: [] for k in fleets}
    moves: dict[str, list[float]] = {k: [] for k in fleets}
    for fleet, centre in fleets.values():
        for i in range(repeats + 1):
            cli(fleet, "add-counter", f"x{i}", "--centre", centre, "--label", f"Quầy x{i}")
    # interleaved, small and big fleet in turn: this shared VM's load drifts over a minute
    for i in range(repeats):
        for size, (fleet, centre) in fleets.items():
            adds[size].append(cli(fleet, "add-device", f"bench-{i}", "--centre", centre, "--counter", f"x{i}")[0])
    free = repeats  # counter x<repeats> has no terminal: each move frees the next one
    for i in range(repeats):
        for size, (fleet, _) in fleets.items():
            moves[size].append(cli(fleet, "move-device", f"bench-{i}", "--counter", f"x{free}")[0])
        free = i
    floor = []
    for _ in range(repeats):
        t = time.monotonic()
        subprocess.run([*HAILONG, "--help"], capture_output=True, check=True, cwd=ROOT)
        floor.append(time.monotonic() - t)
    row("`hailong fleet --help` (interpreter and CLI start-up)", "-", f"median {median(floor) * 1000:.0f} ms")
    for size in fleets:
        a, m = median(adds[size]), median(moves[size])
        row("`fleet add-device` (own process)", size, f"median **{a * 1000:.0f} ms** of {repeats} (baseline "
            f"`move-device`, a validated full rewrite: {m * 1000:.0f} ms, {m / a:.1f}x)")
    # in-process: the edit itself, without interpreter start-up
    centre = "qn-000"
    for i in range(repeats):
        cli(big, "add-counter", f"y{i}", "--centre", centre, "--label", f"Quầy y{i}")
    t = time.monotonic()
    for i in range(repeats):
        append_device(big, new_device(big, id=f"inproc-{i}", centre=centre, counter=f"y{i}"))
    append = (time.monotonic() - t) / repeats
    reg = load_registry(big)
    t = time.monotonic()
    for i in range(repeats):  # an unchanged entry: the whole validate-and-rewrite path, nothing else
        reg = update_device(reg, f"inproc-{i}", retired=False)
    rewrite = (time.monotonic() - t) / repeats
    row("add one terminal, in process", f"{len(reg.devices):,} terminals", f"append {append * 1000:.1f} ms vs "
        f"validated full rewrite {rewrite * 1000:.0f} ms ({rewrite / append:.0f}x)")


def bench_provision(tmp: Path, fleet: Path, n: int, rounds: int) -> None:
    reg = load_registry(fleet)
    centre = "qn-001"
    ids = [d.id for d in reg.active_devices(centre)][:n]
    t = time.monotonic()
    wheel = project_wheel()  # what every later run finds cached until the sources change
    row("the hailong wheel for the bundles", f"{wheel.stat().st_size // 1024} KB",
        f"{time.monotonic() - t:.2f} s (built once per source change, then cached; not in the rows below)")
    per: dict[str, list[float]] = {"password": [], "cert": []}
    k = 1
    for _ in range(rounds):  # modes interleaved, a fresh centre each time: this shared VM's load drifts
        for mode in per:
            c = f"qn-{k:03d}"
            k += 1
            _, out = cli(fleet, "provision", "--centre", c, "--mode", mode, "--out", str(tmp / f"b-{c}"),
                         "--broker-host", "mqtt.qn.example.vn")
            m = re.search(r"provisioned (\d+) terminal\(s\) in ([\d.]+)s", out)
            assert m and int(m.group(1)) == len(reg.active_devices(c)), out
            per[mode].append(float(m.group(2)) / int(m.group(1)))
    for mode, runs in per.items():
        target = " (target <= 50 ms)" if mode == "password" else ""
        row(f"`fleet provision --centre`, {mode} mode{target}", f"{rounds} centres x {len(ids)} terminals",
            f"median **{median(runs) * 1000:.0f} ms per terminal** (runs: "
            f"{', '.join(f'{r * 1000:.0f}' for r in runs)} ms)")
    state = FleetState.for_fleet(fleet)
    s = ProvisionSettings(broker_host="mqtt.qn.example.vn", mode="password", wheel=wheel)
    run = Run(state, s)
    dev = reg.device(ids[0])
    files = bundle_files(reg, dev, state, s, run)
    t = time.monotonic()
    ours = user_data(dev, files, s)
    t_ours = time.monotonic() - t
    doc: dict[str, Any] = yaml.safe_load(ours)
    t = time.monotonic()
    theirs = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
    t_yaml = time.monotonic() - t
    assert yaml.safe_load(theirs) == doc
    row("cloud-init user-data of one terminal", f"{len(ours) // 1024} KB (the wheel inside)",
        f"PyYAML safe_dump {t_yaml * 1000:.0f} ms vs shared pre-encoded entries {t_ours * 1000:.1f} ms")
    ca = run.ca
    k = 200
    t = time.monotonic()
    for i in range(k):
        ca.issue(f"seq-{i}")
    seq = (time.monotonic() - t) / k
    with ThreadPoolExecutor(2) as pool:
        t = time.monotonic()
        list(pool.map(lambda i: ca.issue(f"par-{i}"), range(k)))
        par = (time.monotonic() - t) / k
    row("EC P-256 key + client certificate", f"{k} issued", f"sequential {seq * 1000:.2f} ms each, 2 threads "
        f"{par * 1000:.2f} ms each: under 2% of a terminal's bundle, so not parallelised")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--centres", type=int, default=40)
    ap.add_argument("--counters", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5, help="add-device / move-device calls per fleet size")
    ap.add_argument("--rounds", type=int, default=3, help="centres provisioned per mode")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hl-fleet-import-"))
    try:
        print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)\n", flush=True)
        print("| what | size | result |\n|---|---|---|", flush=True)
        fleet = bench_import(tmp, a.centres, a.counters)
        bench_add_device(tmp, fleet, a.repeats)
        bench_provision(tmp, fleet, a.counters, a.rounds)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
