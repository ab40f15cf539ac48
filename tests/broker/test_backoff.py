"""The fleet's reconnect schedule (broker/mqtt/backoff.py) and that both clients follow it.

Unit part: bounds, cap and spread of the drawn delays, and that 2,000 clients that lost the
broker together do not retry in the same second. Real part: a paho session and the ingest's
consumer against a real Mosquitto, waiting exactly the drawn delays, and both back after the
broker restarts.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from broker.mqtt.backoff import Backoff
from broker.mqtt.consumer import MqttConsumer
from broker.mqtt.session import MqttSession
from broker.mqtt.settings import MqttSettings
from hailong.localstack import MosquittoServer, free_port
from tests.support.mqtt import reconnecting
from tests.support.waiting import wait_until


def test_first_attempt_after_a_loss_is_spread_over_the_window() -> None:
    b = Backoff(1.0, 12.0, 5.0, random.Random(1))
    draws = [b.after_loss() for _ in range(20_000)]
    assert min(draws) >= 0.0 and max(draws) <= 5.0
    # uniform over the window: every fifth of it gets about a fifth of the clients
    fifths = Counter(min(int(d // 1.0), 4) for d in draws)
    assert all(3_600 <= fifths[k] <= 4_400 for k in range(5)), fifths
    assert statistics.mean(draws) == pytest.approx(2.5, abs=0.1)


def test_failures_draw_full_jitter_under_a_doubling_ceiling_up_to_the_cap() -> None:
    b = Backoff(1.0, 12.0, 5.0, random.Random(2))
    assert [b.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 12.0, 12.0, 12.0]
    for n in range(1, 40):
        delays = []
        for _ in range(2_000):
            b.failures = n - 1
            delays.append(b.after_failure())
        assert min(delays) >= 1.0 and max(delays) <= b.ceiling(n) <= 12.0
        # random, not one value: the lockstep of a fixed doubling is what this breaks
        assert statistics.pstdev(delays) > (b.ceiling(n) - 1.0) / 4
    assert b.ceiling(10_000) == 12.0  # no float overflow after weeks of failures


def test_a_success_or_a_loss_restarts_the_schedule() -> None:
    b = Backoff(0.5, 8.0, 1.0, random.Random(3))
    for _ in range(10):
        b.after_failure()
    assert b.failures == 10
    b.connected()
    assert b.failures == 0 and b.after_failure() <= 1.0
    b.after_failure()
    b.after_loss()
    assert b.failures == 0


def test_invalid_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="min_s"):
        Backoff(5.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="spread_s"):
        Backoff(1.0, 2.0, -1.0)
    with pytest.raises(ValueError, match="reconnect_min_s"):
        MqttSettings.model_validate({"reconnect_min_s": 20, "reconnect_max_s": 10})


def test_a_fleet_that_lost_the_broker_together_retries_spread_out() -> None:
    """2,000 clients, broker down 30 s: no second of the outage sees more than a fraction of them."""
    rng = random.Random(4)
    settings = MqttSettings()
    per_second: Counter[int] = Counter()
    next_after_restart = []
    for _ in range(2_000):
        b = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, settings.reconnect_spread_s, rng)
        t = b.after_loss()
        while t < 30.0:
            per_second[int(t)] += 1
            t += b.after_failure()
        next_after_restart.append(t - 30.0)
    # paho's fixed doubling put all 2,000 into each of the seconds +1, +3, +7, +15 (issue 20)
    assert max(per_second.values()) < 1_200, per_second.most_common(3)
    assert sum(1 for n in per_second.values() if n >= 1_000) <= 1
    # the broker is back at +30 s: every client tries within the cap, and not all at once
    assert max(next_after_restart) <= settings.reconnect_max_s
    first_second = sum(1 for d in next_after_restart if d < 1.0)
    assert first_second < 400, first_second


class _Recording(Backoff):
    """The schedule, noting when each failure was reported and what wait it drew."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        object.__setattr__(self, "seen", [])

    def after_failure(self) -> float:
        delay = Backoff.after_failure(self)
        self.seen.append((time.monotonic(), delay))  # type: ignore[attr-defined]
        return delay


@pytest.mark.parametrize("client", ["session", "consumer"])
def test_each_client_waits_the_drawn_delay_between_attempts(client: str) -> None:
    """Nothing listens on the port: every attempt is refused at once, so the gap between two
    failures is the wait that was drawn (paho's own doubling would show 0.2, 0.4, 0.8 ...)."""
    settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{free_port()}",
                                            "reconnect_min_s": 0.2, "reconnect_max_s": 0.6})
    rec = _Recording(0.2, 0.6, 0.2)
    if client == "session":
        c: MqttSession | MqttConsumer = MqttSession(settings, "backoff-probe")
    else:
        c = MqttConsumer(settings, "backoff-probe", subscriptions=[("x", 1)], on_message=lambda *a: None)
    c.backoff = rec
    c.start()
    try:
        wait_until(lambda: len(rec.seen) >= 8, 15, what="eight refused attempts")  # type: ignore[attr-defined]
    finally:
        c.stop()
    seen = rec.seen[:8]  # type: ignore[attr-defined]
    assert c.failed_attempts >= 8
    delays = [d for _, d in seen]
    assert len(set(delays)) == len(delays) and all(0.2 <= d <= 0.6 for d in delays)
    for (t0, d0), (t1, _) in itertools.pairwise(seen):
        assert d0 - 0.02 <= t1 - t0 <= d0 + 0.3, (t1 - t0, d0)


def test_both_clients_come_back_after_the_broker_restarts(tmp_path: Path) -> None:
    broker = MosquittoServer(tmp_path / "mq").start()
    settings = reconnecting(MqttSettings.model_validate(
        {"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username, "password": broker.password}),
        min_s=0.2, max_s=1.0, spread_s=0.5)
    got: list[bytes] = []
    lock = threading.Lock()

    def on_message(_topic: str, payload: bytes, mid: int, _qos: int, _retain: bool) -> None:
        with lock:
            got.append(payload)
        consumer.ack_many([mid])

    consumer = MqttConsumer(settings, "restart-consumer", subscriptions=[("restart/t", 1)],
                            on_message=on_message, session_expiry_s=600)
    session = MqttSession(settings, "restart-publisher")
    try:
        consumer.start()
        session.start()
        assert consumer.wait_connected(10) and session.wait_connected(10)
        wait_until(consumer.subscribed.is_set, 10, what="consumer subscribed")
        broker.stop()
        wait_until(lambda: not consumer.connected.is_set() and not session.connected.is_set(), 10,
                   what="both saw the broker go")
        time.sleep(2.0)  # several refused attempts each
        assert session.failed_attempts >= 1 and consumer.failed_attempts >= 1
        broker.start()
        back = time.monotonic()
        # the cap (1 s) plus a connect: neither waits longer than its schedule allows
        wait_until(lambda: consumer.connected.is_set() and session.connected.is_set(), 5,
                   what="both back after the restart")
        assert time.monotonic() - back <= 2.5
        wait_until(consumer.subscribed.is_set, 5, what="consumer subscribed again")
        session.publish("restart/t", b"after").wait_for_publish(5)
        wait_until(lambda: got == [b"after"], 5, what="a message through the restarted broker")
    finally:
        session.stop()
        consumer.stop()
        broker.stop()
