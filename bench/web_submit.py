"""Web rating service: submission latency at a fixed rate, and every submission stored exactly once.

Real parts, as in the tests: a private Mosquitto and InfluxDB, the real ingest judging (in this process),
the QMS closes of every ticket published first, then ``hailong web serve --config web.toml`` as its own
process (uvicorn, one worker) under an open-loop load: submission i is sent at t0 + i/rate whatever the
earlier ones did, so a slow server shows as latency, not as a lower rate. Latency is measured from the
scheduled send time to the full "Cảm ơn" response (the rating committed to the outbox). The baseline, in
the same run and process: GET /healthz at the same rate (the server's floor without an outbox commit).

    python bench/web_submit.py [--n 10000] [--rate 200] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from broker import weblink  # noqa: E402
from broker.contract import QmsEvent, qms_topic  # noqa: E402
from broker.fleet.credentials import FleetState  # noqa: E402
from hailong.localstack import InfluxServer, MosquittoServer, free_port, stop_process  # noqa: E402
from storage.influxql import InfluxQL  # noqa: E402
from tests.support.ingest import IngestProcess, ingest_config, publish_all, write_fleet  # noqa: E402
from tests.support.judging import mqtt_settings  # noqa: E402

CENTRE = "ttphcc-bench"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def open_loop(port: int, requests: list[tuple[str, str, bytes | None]], rate: float,
                    concurrency: int) -> tuple[list[float], list[int], float]:
    """Send request i at t0 + i/rate over ``concurrency`` keep-alive connections; latency = response time -
    scheduled time (ms), so waiting for a free connection counts. A minimal HTTP/1.1 client: an HTTP library's
    own CPU would be measured too on this 2-core machine."""
    lat: list[float] = [0.0] * len(requests)
    codes: list[int] = [0] * len(requests)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float, bytes] | None] = asyncio.Queue()
    t0 = loop.time() + 0.3

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            i, at, raw = item
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            lat[i] = (loop.time() - at) * 1000
            codes[i] = int(head.split(b" ", 2)[1])
        writer.close()

    def raw(method: str, path: str, body: bytes | None) -> bytes:
        extra = (f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
                 if body is not None else "")
        return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode() + (body or b"")

    wire = [raw(*r) for r in requests]
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for i, data in enumerate(wire):
        at = t0 + i / rate
        await asyncio.sleep(max(0.0, at - loop.time()))
        queue.put_nowait((i, at, data))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return lat, codes, loop.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hl-web-bench-"))
    mosq = MosquittoServer(tmp / "mosquitto").start()
    influx = InfluxServer(tmp / "influx").start()
    web_proc = None
    svc = None
    try:
        # a large centre: 20 counters (the ingest remembers integrity.tickets_per_counter = 512 tickets per counter)
        fleet = write_fleet(tmp / "fleet", CENTRE, [(f"t{c}", f"q{c}") for c in range(1, 21)], has_qms=True)
        ring = FleetState.for_fleet(fleet).link_keyring(CENTRE)
        key = ring.signing_key()
        mqtt = mqtt_settings(mosq)
        db = InfluxQL(influx.url, "bench_web")
        db.create_database()
        # the ingest in its own process (as deployed): in this one it would take the load generator's CPU
        svc = IngestProcess(tmp / "ingest", ingest_config(mqtt, db, "webbench", registry=str(fleet),
                                                          batch={"size": 1000, "max_delay_ms": 50})).start()
        # every ticket served first (its QMS close), then rated from a phone
        now = time.time_ns() // 1_000_000
        day = dt.datetime.fromtimestamp(now / 1000, HCM).date()
        numbers = [f"W{i:05d}" for i in range(args.n)]
        closes = [(qms_topic(CENTRE, f"q{1 + i % 20}"), QmsEvent(
            v=1, type="ticket_closed", counter=f"q{1 + i % 20}", officer="cb-bench", ticket=n, service="ho-tich",
            at=now - 600_000 + i).to_json()) for i, n in enumerate(numbers)]
        time.sleep(3)  # the ingest process connects and subscribes
        publish_all(mqtt, "bench-qms", closes, timeout=300)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            got = db.rows('SELECT count("ticket") FROM "ticket"')
            if got and int(got[0]["count"]) >= args.n:
                break
            time.sleep(0.5)
        expires = weblink.default_expiry(day, "Asia/Ho_Chi_Minh")
        tokens = [weblink.sign(weblink.TicketLink(CENTRE, n, day, expires, source="qr"), key.key_id, key.secret)
                  for n in numbers]
        port = free_port()
        cfg = tmp / "web.toml"
        cfg.write_text(f'fleet = "{fleet}"\noutbox = "{tmp / "web-outbox.sqlite3"}"\n'
                       f'[mqtt]\nurl = "mqtt://127.0.0.1:{mosq.port}"\nusername = "{mosq.username}"\n'
                       f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
                       f'[limits]\nper_ip_per_min = 100000\n', encoding="utf-8")
        env = dict(os.environ, HAILONG_WEB__MQTT__PASSWORD=mosq.password or "", PYTHONPATH=str(REPO))
        log = open(tmp / "web.log", "wb")  # noqa: SIM115 - the server's
        web_proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", "web", "serve", "--config", str(cfg)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        scores = [1 + i % 4 for i in range(args.n)]
        posts = [("POST", f"/r/{t}", urllib.parse.urlencode({"score": s, "lang": "vi"}).encode())
                 for t, s in zip(tokens, scores, strict=True)]
        health = [("GET", "/healthz", None)] * min(args.n, 4000)

        asyncio.run(open_loop(port, [("GET", "/healthz", None)] * 200, args.rate, args.concurrency))  # warm-up
        b_lat, b_codes, _ = asyncio.run(open_loop(port, health, args.rate, args.concurrency))
        s_lat, s_codes, s_secs = asyncio.run(open_loop(port, posts, args.rate, args.concurrency))
        assert set(b_codes) == {200}, set(b_codes)
        ok = s_codes.count(200)
        # a second submit of 500 links: recognised, never a second rating
        again = asyncio.run(_resubmit(base, posts[:500]))
        t_sent = time.monotonic()
        deadline = time.monotonic() + 300
        stored = 0
        while time.monotonic() < deadline:
            rows = db.rows('SELECT count("score") FROM "rating" WHERE "input" = \'web\'')
            stored = int(rows[0]["count"]) if rows else 0
            if stored >= ok:
                break
            time.sleep(0.5)
        time.sleep(3)  # anything extra (a duplicate) would arrive now
        rows = db.rows('SELECT "event_id", "officer", "score", "ticket" FROM "rating" WHERE "input" = \'web\'')
        ids = [r["event_id"] for r in rows]
        expected = {weblink.event_id(t) for t in tokens}
        rejected = db.rows('SELECT count("payload") FROM "rejected"')
        print(f"web submissions: {args.n} at {args.rate:g}/s open loop ({s_secs:.1f} s), "
              f"{args.concurrency} connections")
        print(f"  POST -> 'Cảm ơn' (durable in the outbox): p50 {pct(s_lat, 50):.1f} ms, p99 {pct(s_lat, 99):.1f} ms, "
              f"max {max(s_lat):.1f} ms, mean {statistics.fmean(s_lat):.1f} ms; {ok} x 200, "
              f"others {sorted(set(s_codes) - {200})}")
        print(f"  baseline GET /healthz at the same rate: p50 {pct(b_lat, 50):.1f} ms, p99 {pct(b_lat, 99):.1f} ms; "
              f"p99 ratio {pct(s_lat, 99) / max(pct(b_lat, 99), 0.001):.2f}")
        print(f"  second submit of 500 links: {again.count(200)} x 200 'already rated' pages")
        credited = all(r["officer"] == "cb-bench" for r in rows)
        print(f"  stored in InfluxDB: {len(rows)} web ratings, {len(set(ids))} distinct event ids, "
              f"all expected: {set(ids) == expected}, officer cb-bench: {credited}, "
              f"rejected points: {int(rejected[0]['count']) if rejected else 0} "
              f"(drained {time.monotonic() - t_sent:.1f} s after the last submit)")
        assert len(rows) == len(set(ids)) == args.n and set(ids) == expected, "not exactly once"
    finally:
        if web_proc is not None:
            stop_process(web_proc)
        if svc is not None:
            svc.stop()
        influx.stop()
        mosq.stop()


async def _resubmit(base: str, posts: list[tuple[str, str, bytes | None]]) -> list[int]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        codes = []
        for _, path, body in posts:
            r = await client.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            codes.append(r.status_code if "đã được đánh giá" in r.text else -r.status_code)
        return codes


if __name__ == "__main__":
    main()
