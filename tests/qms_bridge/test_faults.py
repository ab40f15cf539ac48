"""Faults while the vendor keeps writing: the bridge SIGKILLed and restarted, the database
restarted, the broker down for seconds. Every event is published, exactly once by id."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from broker.mqtt.settings import MqttSettings
from hailong.localstack import MosquittoServer
from tests.support.sqlservers import PostgresServer
from tests.support.waiting import wait_until

from .conftest import DEPLOY, BridgeProcess, QmsListener, bridge_config, bridge_env, load_schema
from .test_sql_e2e import CENTRE, check_exactly_once
from .vendor import VendorDb, ms

T = TypeVar("T")
TICKETS = 90
BROKER_DOWN_S = 5.0


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    # our own broker: stopping the session's would disturb the other tests
    server = MosquittoServer(tmp_path / "mosquitto").start()
    yield server
    server.stop()


def _retrying(fn: Callable[..., T], *args: Any, timeout: float = 30) -> T:
    """The vendor's software waits out a database restart; so does the test's writer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args)
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_every_event_exactly_once_through_kill_database_restart_and_broker_outage(
        postgres: PostgresServer, private_broker: MosquittoServer, tmp_path: Path, uid: str,
        request: pytest.FixtureRequest) -> None:
    load_schema(postgres, DEPLOY / "vendor-schema-postgresql.sql")
    settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{private_broker.port}",
                                            "username": private_broker.username,
                                            "password": private_broker.password})
    listener = QmsListener(settings, CENTRE, f"qms-fault-{uid}").start()
    vendor = VendorDb(postgres.url("qms_writer"))
    config = bridge_config(DEPLOY / "qms-postgresql.toml", tmp_path, settings)
    env = bridge_env(tmp_path, HAILONG_QMS__SQL__URL=postgres.url("qms_ro", with_password=False),
                     HAILONG_QMS__SQL__PASSWORD=postgres.ro_password, HAILONG_QMS__SQL__POLL_INTERVAL_S="0.1",
                     HAILONG_QMS__SQL__BATCH_SIZE="5")
    request.node.bridge_log = tmp_path / "bridge.log"
    bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
    today = vendor.now().replace(hour=0, minute=0, second=0, microsecond=0)
    vendor.login("NV01", "Q1", ms(today.replace(hour=7)))
    vendor.login("NV02", "Q2", ms(today.replace(hour=7, minute=1)))
    written = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(TICKETS):
                counter, staff = ("Q1", "NV01") if i % 2 == 0 else ("Q2", "NV02")
                number, service = f"A{i // 30 + 1}{i % 30:02d}", "HT" if i % 3 else "DD"
                base = ms(today.replace(hour=8) + dt.timedelta(minutes=2 * i))
                tid = _retrying(vendor.issue, number, service, base)
                _retrying(vendor.serve, tid, number, service, counter, staff,
                          base + dt.timedelta(seconds=30), base + dt.timedelta(seconds=90))
                time.sleep(0.08)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
        finally:
            written.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: len(listener.events()) >= 6, 20, what="the first events")
        bridge.kill()  # SIGKILL mid-stream: events queued but not acked, a poll half done
        time.sleep(0.5)
        bridge.start()
        wait_until(lambda: len(listener.events()) >= 30, 30, what="events after the kill")
        postgres.restart(down_s=1.5)
        wait_until(lambda: len(listener.events()) >= 60, 30, what="events after the database restart")
        private_broker.stop()
        time.sleep(BROKER_DOWN_S)
        private_broker.start()
        assert written.wait(60) and not errors, errors
        wait_until(lambda: len({d["event_id"] for _, d in listener.events()}) >= len(vendor.expected), 60,
                   what=f"all {len(vendor.expected)} events")
        time.sleep(1.0)  # nothing more may come
        check_exactly_once(listener, vendor, wire_dupes_allowed=True)
        assert len(vendor.expected) == 2 * TICKETS + 2
    finally:
        bridge.stop()
        listener.stop()
        vendor.dispose()
