"""Session-scoped real servers (Mosquitto, InfluxDB 1.6.7) and per-test isolation.

Every test gets its own InfluxDB database and its own MQTT client ids; the
servers are shared by the whole session to keep the suite fast. When a test
fails, the servers' logs are printed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.mqtt.settings import MqttSettings
from hailong.localstack import InfluxServer, MosquittoServer
from storage.influxql import InfluxQL
from tests.support import tally
from tests.support.v2proxy import V2Proxy


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp_path_factory.mktemp("influxdb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def v2proxy(influx_server: InfluxServer) -> Iterator[V2Proxy]:
    proxy = V2Proxy(influx_server.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def mqtt_settings(mosquitto: MosquittoServer) -> MqttSettings:
    return MqttSettings.model_validate(
        {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "username": mosquitto.username,
         "password": mosquitto.password}
    )


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[InfluxQL]:
    """A fresh, empty database for this test."""
    db = InfluxQL(influx_server.url, f"t_{uuid.uuid4().hex[:12]}")
    db.create_database()
    yield db
    db.drop_database()


@pytest.fixture
def uid() -> str:
    """A short unique id for client ids / centre ids of this test."""
    return uuid.uuid4().hex[:8]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        # every server the test used, the session's and a test's own (e.g. the CQ test's InfluxDB)
        for name, server in (getattr(item, "funcargs", None) or {}).items():
            if isinstance(server, (MosquittoServer, InfluxServer)):
                report.sections.append((f"{name} log", server.logs()))


ARTIFACTS = Path(__file__).parent / "artifacts"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Check the tallies whose feeding tests all ran (tests/support/tally.py); a short one fails the session."""
    lines = []
    for t in tally.REGISTRY:
        ok, line = t.verdict()
        if line:
            lines.append(line)
        if ok is False and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and lines:
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line)
