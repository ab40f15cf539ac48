"""Issue 13 acceptance, end to end with real servers and a real terminal.

Vendor rows in PostgreSQL and in MariaDB (yesterday's A001/A002 and today's A001 again: daily-reset
numbers; a recall of A003; officers swapping counters) -> ``hailong qms bridge`` (a real process,
publishing as ``svc.qms.<centre>``) -> a private Mosquitto running the ACL rendered from the fleet
registry -> a headless terminal (device.runtime.DeviceRuntime, as the Pi runs it) that prompts for
the right ticket, vendor ticket id and officer, and is pressed -> the real ingest (as ``svc.ingest``)
-> InfluxDB: each rating attributed to the QMS's officer with its ticket and ticket_id, one ``ticket``
point per ticket (the recall served once, yesterday's A001 another ticket), the bridge's status stored.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker.contract import RatingEvent
from broker.fleet.passwd import hash_password, render_passwd
from broker.fleet.pki import write_private
from broker.fleet.registry import Officer, load_registry
from broker.identities import INGEST_USER, qms_user
from broker.mosquitto.acl import render_acl
from broker.mqtt.settings import MqttSettings
from device.config import DeviceConfig
from device.runtime import DeviceRuntime, HeadlessLoop
from device.state import RatingDraft, State
from firmware_config.fleetedit import render_officers
from hailong.localstack import InfluxServer, MosquittoServer
from storage.influxql import InfluxQL
from tests.support.ingest import start_ingest, write_fleet
from tests.support.sqlservers import SqlServer
from tests.support.waiting import wait_until

from .conftest import DEPLOY, BridgeProcess, _healthz, bridge_config, bridge_env, load_schema
from .vendor import VendorDb, ms

T = TypeVar("T")
CENTRE = "ttphcc-ha-noi"  # the centre of deploy/qms/qms-*.toml
TERMINAL = "hn-q01"
DEVICES = [(TERMINAL, "q01"), ("hn-q02", "q02")]
OFFICERS = {"cb-lan": "Nguyễn Thị Lan", "cb-minh": "Trần Văn Minh"}


class AclBroker:
    """Mosquitto with the fleet's rendered ACL and one password per identity (bridge, ingest, terminals)."""

    def __init__(self, tmp: Path) -> None:
        fleet = write_fleet(tmp / "fleet", CENTRE, DEVICES, has_qms=True)
        (fleet / "officers.toml").write_text(render_officers(
            Officer(id=o, name=n, centre=CENTRE) for o, n in OFFICERS.items()), encoding="utf-8")
        self.registry = load_registry(fleet)
        work = tmp / "broker"
        work.mkdir()
        (work / "acl").write_text(render_acl(self.registry, self.registry.devices.values()), encoding="utf-8")
        self.passwords = {u: os.urandom(9).hex() for u in (qms_user(CENTRE), INGEST_USER, *(d for d, _ in DEVICES))}
        write_private(work / "passwd",
                      render_passwd({u: hash_password(pw) for u, pw in self.passwords.items()}).encode())
        conf = MosquittoServer(work).default_conf() + f"acl_file {work}/acl\n"
        self.server = MosquittoServer(work, conf_text=conf).start()

    def settings(self, user: str) -> MqttSettings:
        return MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{self.server.port}", "username": user,
                                            "password": self.passwords[user]})


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    b = AclBroker(tmp_path_factory.mktemp("qms-e2e"))
    yield b
    b.server.stop()


class Recording(DeviceRuntime):
    """The real runtime; also keeps every RatingEvent it committed to its outbox (what it sends)."""

    def __init__(self, config: DeviceConfig, dispatch: Callable[[Callable[[], None]], None]) -> None:
        self.sent: list[RatingEvent] = []
        super().__init__(config, dispatch)

    def commit(self, draft: RatingDraft) -> object:
        event = super().commit(draft)
        assert isinstance(event, RatingEvent)
        self.sent.append(event)
        return event


class Terminal:
    """A headless counter terminal: the Pi's runtime on its own thread, driven as its screen would be."""

    def __init__(self, settings: MqttSettings, tmp: Path) -> None:
        cfg = DeviceConfig.model_validate({
            "device_id": TERMINAL, "centre": CENTRE, "counter": "q01", "centre_name": "Trung tâm HCC Hà Nội",
            "counter_label": "Quầy 1", "officer_names": OFFICERS, "heartbeat_s": 5,
            "mqtt": settings.model_dump(mode="json") | {"password": settings.secret()},
            "outbox": {"path": str(tmp / "terminal-outbox.sqlite3")}})
        self.loop = HeadlessLoop()
        self.rt = Recording(cfg, self.loop.post)
        self.loop.start(self.rt.terminal.tick)
        self.rt.start()
        wait_until(self.rt.link.connected.is_set, 10, what="terminal connected")

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the terminal's thread (as a tap or a GPIO press would) and return its result."""
        import threading

        done, box = threading.Event(), []
        self.loop.post(lambda: (box.append(fn()), done.set()))  # type: ignore[func-returns-value]
        assert done.wait(5)
        return box[0]  # type: ignore[no-any-return]

    def prompt(self) -> tuple[Any, ...]:
        v = self.rt.terminal.view
        return v.state, v.prompt_ticket, v.prompt_ticket_id, v.prompt_officer

    def stop(self) -> None:
        self.rt.stop()
        self.loop.stop()


def rows(db: InfluxQL, q: str) -> list[dict[str, Any]]:
    return db.rows(q)  # a name for the lambdas below


@pytest.mark.parametrize("db", ["postgres", "mariadb"])
def test_vendor_rows_to_a_terminal_prompt_to_a_rating_credited_to_the_qms_officer(
        db: str, request: pytest.FixtureRequest, broker: AclBroker, influx_server: InfluxServer, tmp_path: Path,
        uid: str) -> None:
    server: SqlServer = request.getfixturevalue(db)
    load_schema(server, DEPLOY / ("vendor-schema-postgresql.sql" if db == "postgres" else "vendor-schema-mariadb.sql"))
    vendor = VendorDb(server.url("qms_writer"))
    influx = InfluxQL(influx_server.url, f"t_qmse2e_{uid}")
    influx.create_database()
    ingest = start_ingest(broker.settings(INGEST_USER), influx, uid, fleet=broker.registry)
    terminal = Terminal(broker.settings(TERMINAL), tmp_path)
    mapping = bridge_config(DEPLOY / ("qms-postgresql.toml" if db == "postgres" else "qms-mariadb.toml"), tmp_path,
                            broker.settings(qms_user(CENTRE)))
    env = bridge_env(tmp_path, HAILONG_QMS__SQL__URL=server.url("qms_ro", with_password=False),
                     HAILONG_QMS__SQL__PASSWORD=server.ro_password, HAILONG_QMS__SQL__POLL_INTERVAL_S="0.2")
    request.node.bridge_log = tmp_path / "bridge.log"
    bridge = BridgeProcess(mapping, env, tmp_path / "bridge.log").start()
    term = terminal.rt.terminal
    try:
        now = vendor.now
        yday = now() - dt.timedelta(days=1)
        # yesterday: A001 and A002 at Q1 (numbers restart every morning); their closes reach the terminal
        # a day late: no prompt, and they must not silence today's A001
        old = [vendor.issue(n, s, ms(yday)) for n, s in (("A001", "HT"), ("A002", "DD"))]
        for tid, (n, s) in zip(old, (("A001", "HT"), ("A002", "DD")), strict=True):
            called, closed = ms(yday + dt.timedelta(minutes=5)), ms(yday + dt.timedelta(minutes=9))
            vendor.serve(tid, n, s, "Q1", "NV01", called, closed)
        wait_until(lambda: term.stats.ignored["stale_close"] == 2, 20, what="yesterday's closes at the terminal")
        assert term.state == State.OUT_OF_SERVICE  # nobody logged in today yet

        # today: NV01 at Q1, NV02 at Q2
        s1 = vendor.login("NV01", "Q1", ms(now()))
        s2 = vendor.login("NV02", "Q2", ms(now()))
        wait_until(lambda: term.officer == "cb-lan" and term.state == State.IDLE, 20, what="NV01 logged in at Q1")
        b1 = vendor.issue("A001", "HT", ms(now()))
        vendor.serve(b1, "A001", "HT", "Q1", "NV01", ms(now()), ms(now()))
        wait_until(lambda: terminal.prompt() == (State.PROMPT, "A001", str(b1), "cb-lan"), 20,
                   what=f"the prompt for today's A001 (vendor id {b1}) by cb-lan")
        assert terminal.call(lambda: term.press(4, "touch")) and term.state == State.THANKS

        # the officers swap counters; the terminal follows the QMS
        vendor.logout(s1, "NV01", "Q1", ms(now()))
        vendor.logout(s2, "NV02", "Q2", ms(now()))
        vendor.login("NV02", "Q1", ms(now()))
        vendor.login("NV01", "Q2", ms(now()))
        wait_until(lambda: term.officer == "cb-minh", 20, what="NV02 now at Q1")
        b2 = vendor.issue("A002", "DD", ms(now()))
        vendor.serve(b2, "A002", "DD", "Q2", "NV01", ms(now()), ms(now()))  # at the other counter: no prompt here
        b3 = vendor.issue("A003", "HT", ms(now()))
        vendor.serve(b3, "A003", "HT", "Q1", "NV02", ms(now()), ms(now()))
        wait_until(lambda: terminal.prompt() == (State.PROMPT, "A003", str(b3), "cb-minh"), 20,
                   what=f"the prompt for A003 (vendor id {b3}) by cb-minh")
        assert terminal.call(lambda: term.press(1, "touch")) and term.state == State.REASONS
        terminal.call(lambda: term.toggle_reason("thai_do"))
        terminal.call(term.submit_reasons)
        assert term.state == State.THANKS
        # the citizen of A003 is recalled: called and closed again (same row, same vendor id)
        vendor.serve(b3, "A003", "HT", "Q1", "NV02", ms(now()), ms(now()))
        wait_until(lambda: term.stats.ignored["repeated_close"] == 1, 20, what="the recall's close, not prompted")
        assert term.stats.rated == 2

        # what the terminal sent carries the vendor ticket identity
        assert [(e.ticket, e.ticket_id, e.officer, e.counter) for e in terminal.rt.sent] == [
            ("A001", str(b1), "cb-lan", "q01"), ("A003", str(b3), "cb-minh", "q01")]

        # InfluxDB: ratings credited to the QMS's officers, with ticket and ticket_id
        def ratings() -> list[dict[str, Any]]:
            return rows(influx, 'SELECT * FROM "rating"')

        got = wait_until(lambda: len(ratings()) == 2 and ratings(), 20, what="2 ratings stored")
        assert sorted((r["ticket"], r["ticket_id"], r["officer"], r["counter"], r["device"], r["score"],
                       r.get("terminal_officer")) for r in got) == [
            ("A001", str(b1), "cb-lan", "q01", TERMINAL, 4, None),
            ("A003", str(b3), "cb-minh", "q01", TERMINAL, 1, None)]
        esc = wait_until(lambda: rows(influx, 'SELECT * FROM "escalation"'), 10, what="the escalation of A003")
        assert [(e["ticket"], e["officer"], e["officer_name"]) for e in esc] == [("A003", "cb-minh", "Trần Văn Minh")]

        # one ticket point per ticket: yesterday's A001/A002 and today's are different tickets; A003 once
        def tickets() -> list[dict[str, Any]]:
            return rows(influx, 'SELECT * FROM "ticket"')

        want = {(str(old[0]), "A001", "q01", "cb-lan"), (str(old[1]), "A002", "q01", "cb-lan"),
                (str(b1), "A001", "q01", "cb-lan"), (str(b2), "A002", "q02", "cb-lan"),
                (str(b3), "A003", "q01", "cb-minh")}
        got_t = wait_until(lambda: len(tickets()) >= len(want) and tickets(), 20, what="the ticket points")
        assert sorted((t["ticket_id"], t["ticket"], t["counter"], t["officer"]) for t in got_t) == sorted(want)
        assert rows(influx, 'SELECT * FROM "rejected"') == [], "nothing refused on the way"

        # the bridge's retained status, stored for the Fleet board
        status = wait_until(lambda: rows(influx, 'SELECT * FROM "device_status" WHERE "device" = \'qms-bridge\''),
                            20, what="the bridge status in device_status")
        assert status[-1]["centre"] == CENTRE and status[-1]["state"] == "ok" and status[-1]["online"] is True
        health = _healthz(int(env["HAILONG_QMS__HTTP__PORT"]))
        assert health is not None and health["state"] == "ok" and health["outbox_depth"] == 0
    finally:
        bridge.stop()
        terminal.stop()
        ingest.stop()
        vendor.dispose()
        influx.drop_database()
