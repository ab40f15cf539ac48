"""QMS bridge latency: vendor close -> event on the terminal's QMS topic, p50/p99.

Real servers, as in the tests: a private Mosquitto, a private PostgreSQL holding the
vendor-like schema (deploy/qms/vendor-schema-postgresql.sql), and the bridge in
process with the deploy/qms mapping files.

- SQL: the vendor commits a close (UPDATE ... closed_at, updated_at); the clock starts
  right after COMMIT returns, the bridge polls every 0.5 s.
- Webhook: the vendor POSTs the close (HMAC-signed); the clock starts before the request.
The clock stops when the subscriber (the terminal's view) receives the QmsEvent.

    python bench/qms_latency.py [--sql-closes 80] [--webhook-closes 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import http.client
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402

from broker.mqtt.session import Message, MqttSession  # noqa: E402
from broker.mqtt.settings import MqttSettings  # noqa: E402
from hailong.localstack import MosquittoServer  # noqa: E402
from qms_bridge.config import load_config  # noqa: E402
from qms_bridge.service import Bridge  # noqa: E402
from tests.qms_bridge.conftest import DEPLOY, bridge_config, load_schema  # noqa: E402
from tests.support.sqlservers import PostgresServer  # noqa: E402

CENTRE = "ttphcc-ha-noi"
SECRET = "bench-key"


class Arrivals:
    def __init__(self, settings: MqttSettings) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()
        self.session = MqttSession(settings, f"bench-qms-{random.randrange(10**6)}",
                                   subscriptions=[(f"hl/v1/{CENTRE}/qms/+", 1)], on_message=self._on_message).start()
        self.session.subscribed.wait(10)

    def _on_message(self, msg: Message) -> None:
        now = time.perf_counter()
        doc = json.loads(msg.payload)
        with self.cond:
            self.times.setdefault(f"{doc['type']}|{doc.get('ticket_id')}", now)
            self.cond.notify_all()

    def wait(self, key: str, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.times:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(key)
                self.cond.wait(left)
            return self.times[key]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def bench_sql(tmp: Path, settings: MqttSettings, arrivals: Arrivals, n: int) -> list[float]:
    pg = PostgresServer().start()
    try:
        load_schema(pg, DEPLOY / "vendor-schema-postgresql.sql")
        cfg = load_config(bridge_config(DEPLOY / "qms-postgresql.toml", tmp, settings), environ={
            "HAILONG_QMS__SQL__URL": pg.url("qms_ro", with_password=False),
            "HAILONG_QMS__SQL__PASSWORD": pg.ro_password, "HAILONG_QMS__SQL__POLL_INTERVAL_S": "0.5",
            "HAILONG_QMS__HTTP__PORT": "0", "HAILONG_QMS__OUTBOX": str(tmp / "sql-outbox.sqlite3")})
        bridge = Bridge(cfg).start()
        engine = sa.create_engine(pg.url("qms_writer"))
        out = []
        try:
            for i in range(n):
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=7)
                with engine.begin() as conn:
                    tid = conn.execute(sa.text(
                        "INSERT INTO tickets (number, service_code, counter_no, staff_code, status, issued_at, "
                        "called_at, closed_at, updated_at) VALUES (:n, 'HT', 'Q1', 'NV01', 'DONE', :t, NULL, :t, :t) "
                        "RETURNING id"), {"n": f"A{i:03d}", "t": now}).scalar_one()
                start = time.perf_counter()
                out.append(arrivals.wait(f"ticket_closed|{tid}") - start)
                time.sleep(random.uniform(0.05, 0.6))  # closes are not aligned with the poll
        finally:
            bridge.stop()
            engine.dispose()
        return out
    finally:
        pg.cleanup()


def bench_webhook(tmp: Path, settings: MqttSettings, arrivals: Arrivals, n: int) -> list[float]:
    cfg = load_config(bridge_config(DEPLOY / "qms-webhook.toml", tmp, settings), environ={
        "HAILONG_QMS__WEBHOOK__SECRET": SECRET, "HAILONG_QMS__HTTP__PORT": "0",
        "HAILONG_QMS__HTTP__HOST": "127.0.0.1", "HAILONG_QMS__OUTBOX": str(tmp / "wh-outbox.sqlite3")})
    bridge = Bridge(cfg).start()
    out = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", bridge.http.port, timeout=10)
        for i in range(n):
            tid = f"bench-{i}"
            body = json.dumps({"event": "DONE", "time": int(time.time() * 1000), "counter": "Q2",
                               "staff": {"code": "NV02"}, "ticket": {"id": tid, "number": f"B{i:03d}",
                                                                     "service": "DD"}}).encode()
            sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            start = time.perf_counter()
            conn.request("POST", "/qms/events", body=body,
                         headers={"Content-Type": "application/json", "X-Hailong-Signature": sig})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
            out.append(arrivals.wait(f"ticket_closed|{tid}") - start)
            time.sleep(random.uniform(0.0, 0.02))
        conn.close()
    finally:
        bridge.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sql-closes", type=int, default=80)
    ap.add_argument("--webhook-closes", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = MosquittoServer(tmp / "mosquitto").start()
        try:
            settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}",
                                                    "username": broker.username, "password": broker.password})
            arrivals = Arrivals(settings)
            rows = []
            for name, fn, n in (("SQL poll 0.5 s (PostgreSQL)", bench_sql, args.sql_closes),
                                ("webhook (HMAC, 1 event per POST)", bench_webhook, args.webhook_closes)):
                lat = [x * 1000 for x in fn(tmp, settings, arrivals, n)]
                rows.append((name, n, statistics.median(lat), pct(lat, 99), max(lat)))
            print("| adapter | closes | p50 ms | p99 ms | max ms |")
            print("|---|---|---|---|---|")
            for name, n, p50, p99, mx in rows:
                print(f"| {name} | {n} | {p50:.1f} | {p99:.1f} | {mx:.1f} |")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
