"""Fixtures for the QMS bridge: private PostgreSQL and MariaDB, a bridge process, a QMS listener."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.mqtt.session import Message, MqttSession
from broker.mqtt.settings import MqttSettings
from hailong.localstack import free_port
from tests.support.mqtt import reconnecting
from tests.support.sqlservers import MariaDbServer, PostgresServer, SqlServer
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "qms"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    server = MariaDbServer().start()
    yield server
    server.cleanup()


@pytest.fixture(autouse=True)
def _clear_retained_bridge_status(request: pytest.FixtureRequest) -> Iterator[None]:
    """A bridge leaves its retained status (online, or the offline last will) on the session's broker; every
    later ingest test would receive it for a centre its registry does not know (and reject it, rightly).
    Tests on the shared broker clear it when they end (an empty retained publish deletes it)."""
    # the session broker (still up at this teardown, unlike the per-test mqtt_settings)
    broker = request.getfixturevalue("mosquitto") if "mqtt_settings" in request.fixturenames else None
    yield
    if broker is None:
        return
    from broker.contract import qms_bridge_status_topic
    from device.publisher import RatingPublisher

    settings = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{broker.port}", "username": broker.username,
                                           "password": broker.password})
    pub = RatingPublisher(settings, f"qms-clear-{os.getpid()}")
    assert pub.start()
    try:
        for centre in ("ttphcc-ha-noi",):  # the centre of every deploy/qms mapping the tests run
            pub.publish_raw(qms_bridge_status_topic(centre), b"", retain=True).wait_for_publish(10)
    finally:
        pub.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("postgres", "mariadb"):
            server = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if server is not None:
                report.sections.append((f"{name} log", server.logs()))
        proc = getattr(item, "bridge_log", None)
        if proc is not None and Path(proc).exists():
            report.sections.append(("bridge log", Path(proc).read_text(errors="replace")[-6000:]))


def load_schema(server: SqlServer, sql_file: Path) -> None:
    import sqlalchemy as sa

    text = "\n".join(line.split("--")[0] for line in sql_file.read_text(encoding="utf-8").splitlines())
    engine = sa.create_engine(server.url("qms_writer"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS tickets"))
        conn.execute(sa.text("DROP TABLE IF EXISTS staff_sessions"))
        for statement in text.split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))
    engine.dispose()
    server.grant_read_only(["tickets", "staff_sessions"])


@dataclass
class QmsListener:
    """Subscribes to every QMS topic of a centre with a persistent session and keeps what arrives."""

    settings: MqttSettings
    centre: str
    client_id: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> QmsListener:
        # 3.1.1 with a kept session: nothing published while the broker restarts is missed
        self.session = MqttSession(
            reconnecting(self.settings.model_copy(update={"protocol": "3.1.1"}), 0.2, 1), self.client_id,
            subscriptions=[(f"hl/v1/{self.centre}/qms/+", 1), (f"hl/v1/{self.centre}/qms/bridge/status", 1)],
            session_expiry_s=3600, on_message=self._on_message).start()
        wait_until(self.session.subscribed.is_set, 10, what="listener subscribed")
        return self

    def _on_message(self, msg: Message) -> None:
        doc = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/bridge/status"):
                self.statuses.append(doc)
            else:
                self.received.append((msg.topic, doc))

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def stop(self) -> None:
        self.session.stop()


@dataclass
class BridgeProcess:
    """`hailong qms bridge` as a real process (so it can be SIGKILLed)."""

    config: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    verbosity: str = "-v"  # -vv: the debug trace (rows left out by `where`, closes not served)

    def start(self) -> BridgeProcess:
        out = open(self.log, "ab")  # noqa: SIM115 - the child writes to it
        self.proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", self.verbosity, "qms", "bridge",
                                      "--config", str(self.config)], env=self.env, stdout=out, stderr=out, cwd=REPO)
        out.close()
        port = int(self.env["HAILONG_QMS__HTTP__PORT"])
        wait_until(lambda: _healthz(port) is not None or self.proc.poll() is not None, 30, what="bridge /healthz")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _healthz(port: int) -> dict[str, Any] | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def bridge_config(deploy_file: Path, tmp: Path, mqtt_settings: MqttSettings) -> Path:
    """The deploy/qms mapping file as is, with the [mqtt] table pointed at the test broker."""
    import re

    text = deploy_file.read_text(encoding="utf-8")
    mqtt_table = (f'[mqtt]\nurl = "{mqtt_settings.url}"\nusername = "{mqtt_settings.username}"\n'
                  f'password = "{mqtt_settings.secret()}"\n\n')
    text, n = re.subn(r"\[mqtt\]\n.*?\n\n", lambda _: mqtt_table, text, count=1, flags=re.S)
    assert n == 1
    path = tmp / deploy_file.name
    path.write_text(text, encoding="utf-8")
    return path


def bridge_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAILONG_QMS__")}
    env.update({
        "PYTHONPATH": str(REPO),
        "HAILONG_QMS__OUTBOX": str(tmp / "outbox.sqlite3"),
        "HAILONG_QMS__HTTP__PORT": str(free_port()),
        "HAILONG_QMS__STATUS_INTERVAL_S": "2",
    })
    env.update(extra)
    return env
