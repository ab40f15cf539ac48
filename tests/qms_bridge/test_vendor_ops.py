"""What a queue vendor and the centre's IT run into, against the real PostgreSQL and MariaDB:
cancelled and transferred tickets (a status column), a row whose officer code is not in the map
yet (held, one ERROR per retry, published once the map has it, no state edited by hand), an
unknown column (mapping_error naming it, not database_unreachable), a database that is really
gone (database_unreachable), and the read position commands."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from broker.mqtt.settings import MqttSettings
from hailong.localstack import free_port
from tests.support.sqlservers import SqlServer
from tests.support.waiting import wait_until

from .conftest import DEPLOY, REPO, BridgeProcess, QmsListener, _healthz, bridge_config, bridge_env, load_schema
from .vendor import VendorDb, as_expected, local_ms, ms

CENTRE = "ttphcc-ha-noi"
FILES = {"postgres": ("vendor-schema-postgresql.sql", "qms-postgresql.toml"),
         "mariadb": ("vendor-schema-mariadb.sql", "qms-mariadb.toml")}


def _setup(db: str, request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path,
           **env_extra: str) -> tuple[SqlServer, VendorDb, Path, dict[str, str]]:
    server: SqlServer = request.getfixturevalue(db)
    schema, mapping = FILES[db]
    load_schema(server, DEPLOY / schema)
    config = bridge_config(DEPLOY / mapping, tmp_path, mqtt_settings)
    env = bridge_env(tmp_path, HAILONG_QMS__SQL__URL=server.url("qms_ro", with_password=False),
                     HAILONG_QMS__SQL__PASSWORD=server.ro_password, HAILONG_QMS__SQL__POLL_INTERVAL_S="0.2",
                     **env_extra)
    request.node.bridge_log = tmp_path / "bridge.log"
    return server, VendorDb(server.url("qms_writer")), config, env


def _end(vendor: VendorDb, tid: int, status: str, counter: str, staff: str, called: dt.datetime,
         ended: dt.datetime) -> None:
    """The vendor's software ends a ticket without serving it: cancelled (HUY) or transferred
    (CHUYEN), with an end time in closed_at, as the issue's vendor schema does."""
    with vendor.engine.begin() as conn:
        conn.execute(sa.text("UPDATE tickets SET counter_no = :c, staff_code = :s, status = :st, called_at = :ca, "
                             "closed_at = :cl, updated_at = :u WHERE id = :id"),
                     {"c": counter, "s": staff, "st": status, "ca": called, "cl": ended, "u": vendor.now(), "id": tid})


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hailong.cli", "qms", "bridge", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _error_lines(log: Path, code: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line and code in line]


@pytest.mark.parametrize("db", ["postgres", "mariadb"])
def test_cancelled_and_transferred_are_never_closes_and_an_unmapped_officer_is_held_then_published(
        db: str, request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path, uid: str) -> None:
    _, vendor, config, env = _setup(db, request, mqtt_settings, tmp_path, HAILONG_QMS__SQL__RETRY_HELD_S="2")
    listener = QmsListener(mqtt_settings, CENTRE, f"qms-ops-{uid}").start()
    log = tmp_path / "bridge.log"
    bridge = BridgeProcess(config, env, log, verbosity="-vv").start()
    port = int(env["HAILONG_QMS__HTTP__PORT"])
    try:
        today = vendor.now().replace(hour=0, minute=0, second=0, microsecond=0)
        t = lambda h, m: ms(today.replace(hour=h, minute=m))  # noqa: E731
        served = vendor.issue("A001", "HT", t(8, 0))
        vendor.serve(served, "A001", "HT", "Q1", "NV01", t(8, 5), t(8, 10))
        cancelled = vendor.issue("A002", "HT", t(8, 1))
        _end(vendor, cancelled, "HUY", "Q1", "NV01", t(8, 11), t(8, 12))
        transferred = vendor.issue("A003", "DD", t(8, 2))
        _end(vendor, transferred, "CHUYEN", "Q2", "NV02", t(8, 13), t(8, 14))
        never_called = vendor.issue("A005", "HT", t(8, 3))  # counter_no NULL: the `where` leaves it out
        unmapped = vendor.issue("A004", "DD", t(8, 4))
        with vendor.engine.begin() as conn:  # served by an officer the map does not know yet
            conn.execute(sa.text("UPDATE tickets SET counter_no = 'Q2', staff_code = 'NV09', status = 'DONE', "
                                 "called_at = :ca, closed_at = :cl, updated_at = :u WHERE id = :id"),
                         {"ca": t(8, 20), "cl": t(8, 25), "u": vendor.now(), "id": unmapped})
        calls = {("ticket_called", "q01", "cb-lan", "A002", str(cancelled), "ho-tich", local_ms(t(8, 11))),
                 ("ticket_called", "q02", "cb-minh", "A003", str(transferred), "dat-dai", local_ms(t(8, 13)))}
        want = set(vendor.expected) | calls
        wait_until(lambda: {as_expected(d) for _, d in listener.events()} >= want, 20, what="the mapped events")
        held_at = time.monotonic()
        health = wait_until(lambda: (h := _healthz(port)) and h["state"] == "mapping_error" and h, 10,
                            what="mapping_error")
        assert "NV09" in health["mapping_error"] and "maps.officers" in health["mapping_error"], health
        assert health["sql"]["held_rows"] == 1 and health["sql"]["problem"] is None
        # the overlap window (5 s) re-reads the row ~25 times; retries every 2 s: wait at least that long,
        # and (a loaded machine delays the bridge) until the first retry has logged
        time.sleep(5)
        wait_until(lambda: len(_error_lines(log, "'NV09'")) >= 2, 30, what="the first retry's log line")
        elapsed = time.monotonic() - held_at + 2
        errors = _error_lines(log, "'NV09'")
        # one line when held, then one per retry (every 2 s) with the attempt count, never one per re-read
        assert 2 <= len(errors) <= elapsed / 2 + 2, errors
        assert f"row id={unmapped} held" in errors[0] and "still held (attempt 2 since" in errors[1], errors
        stamps = [dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in errors]
        assert all((b - a).total_seconds() >= 1.5 for a, b in itertools.pairwise(stamps)), errors
        text = log.read_text(errors="replace")
        # the debug trace: the row `where` left out, the closes the status map says were not served
        assert re.search(rf"row id={never_called} left out by where", text), text[-3000:]
        assert f"row id={cancelled}: ticket_closed not published: status 'HUY' is not_served" in text
        assert f"row id={transferred}: ticket_closed not published: status 'CHUYEN' is not_served" in text
        listed = _cli("held", "list", "--config", str(config), env=env)
        assert listed.returncode == 0 and f"tickets {unmapped}: officer: unknown officer 'NV09'" in listed.stdout
    except BaseException:
        bridge.stop()
        raise
    assert {as_expected(d) for _, d in listener.events()} == want, "no close of a cancelled/transferred ticket"
    # the map gains NV09, and the bridge is told (PostgreSQL: SIGHUP to the running bridge; MariaDB: a
    # restart): the held row is published, nothing edited by hand
    config.write_text(config.read_text().replace('NV02 = "cb-minh"\n', 'NV02 = "cb-minh"\nNV09 = "cb-huy"\n'))
    if db == "postgres":
        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGHUP)
    else:
        bridge.stop()
        bridge = BridgeProcess(config, env, log).start()
    try:
        fixed = {("ticket_called", "q02", "cb-huy", "A004", str(unmapped), "dat-dai", local_ms(t(8, 20))),
                 ("ticket_closed", "q02", "cb-huy", "A004", str(unmapped), "dat-dai", local_ms(t(8, 25)))}
        wait_until(lambda: {as_expected(d) for _, d in listener.events()} >= want | fixed, 20,
                   what="the held row's events")
        wait_until(lambda: (h := _healthz(port)) and h["state"] == "ok", 10, what=f"ok again {_healthz(port)}")
        if db == "postgres":  # the same process, its maps reloaded
            assert "reload: [maps] applied" in log.read_text(errors="replace")
        assert _cli("held", "list", "--config", str(config), env=env).stdout == ""
    finally:
        bridge.stop()
        listener.stop()
        vendor.dispose()
    got = [as_expected(d) for _, d in listener.events()]
    assert sorted(set(got)) == sorted(want | fixed) and len({d["event_id"] for _, d in listener.events()}) == 6


@pytest.mark.parametrize("db", ["postgres", "mariadb"])
def test_an_unknown_column_is_a_mapping_error_naming_it(
        db: str, request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    _, vendor, config, env = _setup(db, request, mqtt_settings, tmp_path)
    config.write_text(config.read_text().replace('officer = "staff_code", service', 'officer = "staf_code", service'))
    bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
    port = int(env["HAILONG_QMS__HTTP__PORT"])
    try:
        health = wait_until(lambda: (h := _healthz(port)) and h["state"] != "ok" and h, 10, what="a problem state")
        assert health["state"] == "mapping_error", health
        assert "staf_code" in health["mapping_error"] and "tickets" in health["mapping_error"], health
        # the other source still works: the database is reachable, and says so
        assert health["sql"]["problem"] == "mapping"
    finally:
        bridge.stop()
        vendor.dispose()


def test_only_a_database_that_is_gone_is_database_unreachable(
        request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    _, vendor, config, env = _setup("postgres", request, mqtt_settings, tmp_path)
    env["HAILONG_QMS__SQL__URL"] = f"postgresql+psycopg://qms_ro@127.0.0.1:{free_port()}/qms"
    bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
    port = int(env["HAILONG_QMS__HTTP__PORT"])
    try:
        assert _healthz(port)["state"] == "ok"  # type: ignore[index] - a refused connect may be a blip at first
        health = wait_until(lambda: (h := _healthz(port)) and h["state"] == "database_unreachable" and h, 20,
                            what="database_unreachable")
        assert health["sql"]["problem"] == "unreachable" and "mapping_error" not in health
    finally:
        bridge.stop()
        vendor.dispose()


def test_mark_show_reset_and_set_move_the_read_position(
        request: pytest.FixtureRequest, mqtt_settings: MqttSettings, tmp_path: Path, uid: str) -> None:
    _, vendor, config, env = _setup("postgres", request, mqtt_settings, tmp_path)
    listener = QmsListener(mqtt_settings, CENTRE, f"qms-mark-{uid}").start()
    t0 = vendor.now().replace(hour=8, minute=0, second=0, microsecond=0)
    try:
        a = vendor.issue("A001", "HT", t0)
        vendor.serve(a, "A001", "HT", "Q1", "NV01", t0 + dt.timedelta(minutes=1), t0 + dt.timedelta(minutes=2))
        bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
        wait_until(lambda: len(listener.events()) == 2, 20, what="A001's events")
        bridge.stop()
        shown = _cli("mark", "show", "--config", str(config), env=env)
        assert shown.returncode == 0, shown.stderr
        assert re.search(rf"^tickets: after updated_at = \S+, id = {a}; 0 row\(s\) held$", shown.stdout, re.M), shown
        assert "sessions: from the start (nothing read yet)" in shown.stdout
        # reset: read again from the first row; what was published is recognised and not sent again
        assert _cli("mark", "reset", "--source", "tickets", "--config", str(config), env=env).returncode == 0
        assert "tickets: from the start" in _cli("mark", "show", "--config", str(config), env=env).stdout
        bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
        wait_until(lambda: f"id = {a}" in _cli("mark", "show", "--config", str(config), env=env).stdout, 20,
                   what="the mark back at A001")
        time.sleep(1)
        assert len(listener.events()) == 2
        bridge.stop()
        # set: skip B (a backlog nobody wants published), read C
        b = vendor.issue("A002", "HT", t0)
        vendor.serve(b, "A002", "HT", "Q1", "NV01", t0 + dt.timedelta(minutes=3), t0 + dt.timedelta(minutes=4))
        with vendor.engine.connect() as conn:
            b_changed = conn.execute(sa.text("SELECT updated_at FROM tickets WHERE id = :id"), {"id": b}).scalar_one()
        c = vendor.issue("A003", "HT", t0)
        vendor.serve(c, "A003", "HT", "Q1", "NV01", t0 + dt.timedelta(minutes=5), t0 + dt.timedelta(minutes=6))
        done = _cli("mark", "set", "--source", "tickets", "--changed", b_changed.isoformat(), "--id", str(b),
                    "--config", str(config), env=env)
        assert done.returncode == 0, done.stderr
        bridge = BridgeProcess(config, env, tmp_path / "bridge.log").start()
        wait_until(lambda: len(listener.events()) == 4, 20, what="C's events")
        time.sleep(1)
        assert [d["ticket"] for _, d in listener.events()] == ["A001", "A001", "A003", "A003"]
        bridge.stop()
        wrong = _cli("mark", "reset", "--source", "ticket", "--config", str(config), env=env)
        assert wrong.returncode != 0 and "'ticket' is not a source" in wrong.stderr
    finally:
        listener.stop()
        vendor.dispose()
