"""Benchmark: tap -> "Cảm ơn" with spoken prompts on, against the same terminal silent, in one run.

    python bench/device_audio.py [--taps 120] [--pairs 2]

Runs bench/device_latency.py alternately without and with ``--audio`` (each its own Xvfb,
Mosquitto and Kivy process: one window per process), ``--pairs`` times, so both see the same
machine load. With audio, SDL's disk driver plays every clip at a sound card's pace to a file
on /dev/shm (standing in for the sound card; on the outbox's disk, the outbox's fsync would
flush it too). Prints each run and a summary: p99 with audio (target
<= 50 ms), its ratio to the silent runs, and the speaker's own cost on the UI thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(taps: int, audio: bool) -> dict[str, object]:
    cmd = [sys.executable, str(ROOT / "bench" / "device_latency.py"), "--taps", str(taps), *(["--audio"] * audio)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    out = proc.stdout
    result: dict[str, object] = json.loads(out[out.index("{"):])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--taps", type=int, default=120)
    ap.add_argument("--pairs", type=int, default=2)
    args = ap.parse_args()
    runs: dict[bool, list[dict[str, object]]] = {False: [], True: []}
    for i in range(args.pairs):
        for audio in (False, True):
            r = run(args.taps, audio)
            runs[audio].append(r)
            print(f"pair {i + 1} audio={'on ' if audio else 'off'}: "
                  f"{json.dumps({k: r[k] for k in r if k not in ('ignored_presses',)})}", flush=True)

    def p99s(audio: bool) -> list[float]:
        return [float(r["tap_to_thanks_ms"]["p99"]) for r in runs[audio]]  # type: ignore[index]

    def p50s(audio: bool) -> list[float]:
        return [float(r["tap_to_thanks_ms"]["p50"]) for r in runs[audio]]  # type: ignore[index]

    play = [float(r["speaker_play_ms"]["p99"]) for r in runs[True]]  # type: ignore[index]
    summary = {
        "taps_per_run": args.taps, "pairs": args.pairs,
        "p99_off_ms": p99s(False), "p99_on_ms": p99s(True),
        "p50_off_ms": p50s(False), "p50_on_ms": p50s(True),
        "p99_on_worst_ms": max(p99s(True)),
        "p99_ratio_on_off_median": round(statistics.median(p99s(True)) / statistics.median(p99s(False)), 2),
        "speaker_play_p99_ms": play,
        "load_average_1m": [r["load_average_1m"] for r in runs[False] + runs[True]],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
