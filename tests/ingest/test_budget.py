"""Issue 12.7: the ingest bounds what it holds itself, whatever the broker's receive maximum.

InfluxDB (the real 1.6.7) is made slow by a forwarding proxy that delays every write, so acks come
late; the broker is allowed 1,000 un-acked messages (receive maximum), the ingest's own budget is
far smaller. It must pause reading at its budget, and still store every rating exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from broker.contract import rating_topic
from broker.mqtt.settings import MqttSettings
from hailong.localstack import InfluxServer
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.ingest import publish_all, rating, start_ingest
from tests.support.waiting import wait_until

WRITE_DELAY_S = 0.3


class SlowInflux:
    """Forwards to the real InfluxDB; every POST /write waits WRITE_DELAY_S first."""

    def __init__(self, upstream: str) -> None:
        http = urllib3.PoolManager(maxsize=4)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                if self.path.startswith("/write"):
                    time.sleep(WRITE_DELAY_S)
                resp = http.request(method, upstream + self.path, body=body,
                                    headers={"Content-Type": self.headers.get("Content-Type", "text/plain")})
                self.send_response(resp.status)
                self.send_header("Content-Length", str(len(resp.data)))
                self.end_headers()
                self.wfile.write(resp.data)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def log_message(self, *_a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_influx(influx_server: InfluxServer) -> Iterator[SlowInflux]:
    proxy = SlowInflux(influx_server.url)
    yield proxy
    proxy.stop()


def _event_ids(db: InfluxQL) -> list[str]:
    return [r["event_id"] for r in db.rows('SELECT "event_id" FROM "rating"')]


class Sampler:
    """Samples what the ingest holds every 5 ms while messages flow."""

    def __init__(self, svc: IngestService) -> None:
        self.svc, self.peak_messages, self.peak_in_flight = svc, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_messages = max(self.peak_messages, self.svc.budget.messages)
            self.peak_in_flight = max(self.peak_in_flight, self.svc.stats.in_flight)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("bound", ["messages", "bytes"])
def test_held_messages_and_bytes_stay_within_the_ingest_budget(mqtt_settings: MqttSettings, influx_db: InfluxQL,
                                                               slow_influx: SlowInflux, uid: str,
                                                               bound: str) -> None:
    centre, device = f"c{uid}", f"d{uid}"
    n = 300
    msgs = [(rating_topic(centre, device), rating(centre, device, "q1", "cb1", None, i).to_json())
            for i in range(1, n + 1)]
    size = len(msgs[0][1])
    limits = {"max_unacked_messages": 40} if bound == "messages" else {"max_unacked_bytes": 64 * 1024}
    svc = start_ingest(mqtt_settings, influx_db, uid, influx_url=slow_influx.url,
                       batch={"size": 20, "max_delay_ms": 20, "max_in_flight": 1000, **limits})
    sampler = Sampler(svc)
    t0 = time.monotonic()
    try:
        publish_all(mqtt_settings, f"pub-{uid}", msgs)
        wait_until(lambda: len(_event_ids(influx_db)) >= n, 60, what="every rating stored")
        elapsed = time.monotonic() - t0
        wait_until(lambda: svc.budget.messages == 0, 10, what="budget returned")
    finally:
        sampler.stop()
        svc.stop()
    ids = _event_ids(influx_db)
    assert len(ids) == n and len(set(ids)) == n, "nothing lost, nothing doubled"
    b = svc.budget
    if bound == "messages":
        assert b.peak_messages <= 40 and sampler.peak_in_flight <= 40, (b.peak_messages, sampler.peak_in_flight)
    else:
        assert b.peak_bytes <= 64 * 1024, b.peak_bytes
        assert b.peak_messages <= 64 * 1024 // size
    assert b.pauses > 0, "the budget was reached, so reading must have paused"
    assert svc.stats.abandoned == 0
    print(f"\nbudget[{bound}]: {n} ratings of {size} B, writes delayed {WRITE_DELAY_S}s: peak held "
          f"{b.peak_messages} msgs / {b.peak_bytes} B (sampled in_flight {sampler.peak_in_flight}), "
          f"{b.pauses} pauses, {elapsed:.1f}s")
