"""Every rejection reason, against the real broker and InfluxDB: the ``rejected`` point is there, with its
reason, and valid traffic published right after it is still stored (one ingest for the whole table)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.contract import qms_topic, rating_topic, status_topic
from broker.mqtt.settings import MqttSettings
from device.publisher import RatingPublisher
from hailong.localstack import InfluxServer, MosquittoServer
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms, rating, start_ingest, ticket_closed
from tests.support.waiting import wait_until

Msg = tuple[str, bytes]


@dataclass
class Stack:
    uid: str
    db: InfluxQL
    svc: IngestService
    pub: RatingPublisher
    fleet: TFleet
    seq: Iterator[int]

    @property
    def qa(self) -> str:  # centre with a QMS, walk-ups not allowed
        return f"qa{self.uid}"

    @property
    def wb(self) -> str:  # centre without a QMS, walk-ups allowed
        return f"wb{self.uid}"

    def dev(self, name: str) -> str:
        return f"{name}{self.uid}"

    def send(self, msgs: list[Msg]) -> None:
        infos = [self.pub.publish_raw(t, p) for t, p in msgs]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()

    def ratings(self) -> dict[str, dict[str, Any]]:
        return {r["event_id"]: r for r in self.db.rows('SELECT * FROM "rating"')}


@pytest.fixture(scope="module")
def stack(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[Stack]:
    uid = uuid.uuid4().hex[:6]
    mqtt = MqttSettings.model_validate({"url": f"mqtt://127.0.0.1:{mosquitto.port}",
                                        "username": mosquitto.username, "password": mosquitto.password})
    db = InfluxQL(influx_server.url, f"t_integrity_{uid}")
    db.create_database()
    qa, wb = f"qa{uid}", f"wb{uid}"
    fleet = TFleet().add(TCentre(qa, province="hue"), TDevice(f"a1{uid}", qa, "q1"), TDevice(f"a2{uid}", qa, "q2"),
                         TDevice(f"ar{uid}", qa, "q1", retired=True))
    fleet.add(TCentre(wb, province="da-nang", has_qms=False, walkup_allowed=True), TDevice(f"b1{uid}", wb, "q1"))
    svc = start_ingest(mqtt, db, uid, fleet=fleet, integrity={"hold_grace_s": 1.5})
    pub = RatingPublisher(mqtt, f"pub-{uid}")
    assert pub.start()
    yield Stack(uid, db, svc, pub, fleet, iter(range(1, 10_000)))
    pub.stop()
    svc.stop()
    db.drop_database()


def r_msg(s: Stack, device: str, counter: str, ticket: str | None, centre: str | None = None,
          topic_device: str | None = None, officer: str = "cb1", **changes: Any) -> tuple[Msg, str]:
    centre = centre or s.qa
    ev = rating(centre, device, counter, officer, ticket, next(s.seq), **changes)
    return (rating_topic(centre, topic_device or device), ev.to_json()), ev.event_id


def close(s: Stack, counter: str, ticket: str, officer: str = "cb1", centre: str | None = None) -> Msg:
    return qms_topic(centre or s.qa, counter), ticket_closed(counter, officer, ticket).to_json()


def t(s: Stack, name: str) -> str:
    return f"T-{name[:6]}{next(s.seq)}"


# Each case returns the messages to publish and the event_id that must be rejected.
def case_unknown_device(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("zz"), "q1", None)
    return [m], eid


def case_retired_device(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("ar"), "q1", None)
    return [m], eid


def case_wrong_centre(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("a1"), "q1", None, centre=s.wb)
    return [m], eid


def case_wrong_counter(s: Stack) -> tuple[list[Msg], str]:
    tk = t(s, "wc")
    m, eid = r_msg(s, s.dev("a1"), "q2", tk)
    return [close(s, "q2", tk), m], eid


def case_topic_mismatch(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("a2"), "q2", None, topic_device=s.dev("a1"))
    return [m], eid


def case_duplicate_ticket(s: Stack) -> tuple[list[Msg], str]:
    tk = t(s, "dup")
    first, _ = r_msg(s, s.dev("a1"), "q1", tk)
    second, eid = r_msg(s, s.dev("a1"), "q1", tk, score=1)
    return [close(s, "q1", tk), first, second], eid


def case_unknown_ticket(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("a1"), "q1", t(s, "unk"))
    return [m], eid


def case_ticket_closed_elsewhere(s: Stack) -> tuple[list[Msg], str]:
    tk = t(s, "else")
    m, eid = r_msg(s, s.dev("a1"), "q1", tk)
    return [close(s, "q2", tk), m], eid


def case_conflicting_event(s: Stack) -> tuple[list[Msg], str]:
    # refused as a walk-up, then "fixed" under the same event_id: one event_id is one rating
    (topic, payload), eid = r_msg(s, s.dev("a1"), "q1", None)
    tk = t(s, "conf")
    fixed = payload.replace(b'"ticket":null', f'"ticket":"{tk}"'.encode()).replace(
        b'"closed_at":null', f'"closed_at":{now_ms() - 1000}'.encode())
    return [close(s, "q1", tk), (topic, payload), (topic, fixed)], eid


def case_outside_window(s: Stack) -> tuple[list[Msg], str]:
    tk = t(s, "win")
    now = now_ms()
    # the QMS closed it 10 min ago; the device's claim (closed 1 s ago) is not what the window measures
    m, eid = r_msg(s, s.dev("a1"), "q1", tk, closed_at=now - 1000)
    return [(qms_topic(s.qa, "q1"), ticket_closed("q1", "cb1", tk, at=now - 600_000).to_json()), m], eid


def case_walkup_not_allowed(s: Stack) -> tuple[list[Msg], str]:
    m, eid = r_msg(s, s.dev("a1"), "q1", None)
    return [m], eid


def case_absurd_timestamp(s: Stack) -> tuple[list[Msg], str]:
    now = now_ms()
    m, eid = r_msg(s, s.dev("b1"), "q1", None, centre=s.wb, rated_at=now + 3_600_000, sent_at=now)
    return [m], eid


def case_invalid_field(s: Stack) -> tuple[list[Msg], str]:
    (topic, payload), eid = r_msg(s, s.dev("b1"), "q1", None, centre=s.wb)
    return [(topic, payload.replace(b'"score":4', b'"score":"4"'))], eid


CASES: dict[str, tuple[Callable[[Stack], tuple[list[Msg], str]], str]] = {
    "unknown_device": (case_unknown_device, "unknown_device"),
    "retired_device": (case_retired_device, "retired_device"),
    "wrong_centre": (case_wrong_centre, "wrong_centre"),
    "wrong_counter": (case_wrong_counter, "wrong_counter"),
    "topic_mismatch": (case_topic_mismatch, "topic_mismatch"),
    "duplicate_ticket": (case_duplicate_ticket, "duplicate_ticket"),
    "unknown_ticket": (case_unknown_ticket, "unknown_ticket"),
    "ticket_closed_at_another_counter": (case_ticket_closed_elsewhere, "unknown_ticket"),
    "conflicting_event": (case_conflicting_event, "conflicting_event"),
    "outside_window": (case_outside_window, "outside_window"),
    "walkup_not_allowed": (case_walkup_not_allowed, "walkup_not_allowed"),
    "absurd_timestamp": (case_absurd_timestamp, "absurd_timestamp"),
    "invalid_field": (case_invalid_field, "invalid_field"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rejection_reason(stack: Stack, name: str) -> None:
    build, reason = CASES[name]
    bad, bad_id = build(stack)
    tk = t(stack, "ok")
    good, good_id = r_msg(stack, stack.dev("a1"), "q1", tk)
    stack.send([*bad, close(stack, "q1", tk), good])

    def rejected_row() -> dict[str, Any] | None:
        rows = stack.db.rows(f'SELECT * FROM "rejected" WHERE "reason" = \'{reason}\'')
        return next((r for r in rows if bad_id in r["payload"]), None)

    row = wait_until(rejected_row, timeout=15, what=f"rejected point {reason}")
    assert row["detail"], "a rejection must say why"
    assert row["topic"].startswith("hl/v1/")
    ratings = wait_until(lambda: good_id in stack.ratings() and stack.ratings(), what="the valid rating after it")
    assert bad_id not in ratings
    assert ratings[good_id]["province"] == "hue"
    assert ratings[good_id]["walkup"] == "false"


def test_walkup_stored_where_allowed_and_ticket_without_qms(stack: Stack) -> None:
    walk, walk_id = r_msg(stack, stack.dev("b1"), "q1", None, centre=stack.wb)
    tick, tick_id = r_msg(stack, stack.dev("b1"), "q1", t(stack, "noqms"), centre=stack.wb)
    stack.send([walk, tick])
    rows = wait_until(lambda: {walk_id, tick_id} <= set(stack.ratings()) and stack.ratings(), what="both ratings")
    assert rows[walk_id]["walkup"] == "true"
    assert rows[walk_id].get("ticket") is None
    assert rows[tick_id]["walkup"] == "false"
    assert rows[walk_id]["province"] == rows[tick_id]["province"] == "da-nang"


def test_rating_before_its_ticket_closed_is_held_then_accepted(stack: Stack) -> None:
    tk = t(stack, "late")
    early, eid = r_msg(stack, stack.dev("a1"), "q1", tk)
    stack.send([early])
    wait_until(lambda: stack.svc.stats.held >= 1, what="the rating to be held")
    assert eid not in stack.ratings()
    assert stack.svc.stats.in_flight >= 1, "a held rating stays un-acked"
    stack.send([close(stack, "q1", tk)])
    wait_until(lambda: eid in stack.ratings(), what="the held rating to be stored")
    tickets = stack.db.rows(f'SELECT * FROM "ticket" WHERE "ticket" = \'{tk}\'')
    assert [(r["officer"], r["province"], r["counter"]) for r in tickets] == [("cb1", "hue", "q1")]


def test_clock_at_1970_is_corrected(stack: Stack) -> None:
    boot = 5_000  # a Pi without RTC: its clock says 1970-01-01 00:00:05
    tk = t(stack, "clk")
    m, eid = r_msg(stack, stack.dev("a1"), "q1", tk, closed_at=boot - 2000, rated_at=boot, sent_at=boot + 100)
    before = now_ms()
    closed = before - 1000
    stack.send([(qms_topic(stack.qa, "q1"), ticket_closed("q1", "cb1", tk, at=closed).to_json()), m])
    row = wait_until(lambda: stack.ratings().get(eid), what="the corrected rating")
    assert row["clock_corrected"] is True
    assert before - 2000 <= row["time"] <= now_ms() + 1000, "rated_at shifted to our clock"
    # measured from the QMS close the ingest holds, not from the device's closed_at
    assert row["response_ms"] == row["time"] - closed and row["closed_at_ms"] == closed


def test_status_from_registered_device_and_unknown_device(stack: Stack) -> None:
    ok = (status_topic(stack.wb, stack.dev("b1")),
          f'{{"v":1,"device":"{stack.dev("b1")}","centre":"{stack.wb}","online":true,"outbox_depth":3}}'.encode())
    bad = (status_topic(stack.wb, stack.dev("zz")),
           f'{{"v":1,"device":"{stack.dev("zz")}","centre":"{stack.wb}","online":true}}'.encode())
    stack.send([ok, bad])
    rows = wait_until(lambda: stack.db.rows('SELECT * FROM "device_status"'), what="device_status point")
    assert [(r["device"], r["online"], r["outbox_depth"]) for r in rows] == [(stack.dev("b1"), True, 3)]
    wait_until(lambda: stack.db.rows(f'SELECT * FROM "rejected" WHERE "device" = \'{stack.dev("zz")}\' '
                                     'AND "reason" = \'unknown_device\' AND "topic" =~ /status$/'),
               what="status of an unknown device rejected")


def test_registry_reload_moves_a_device_without_restart(stack: Stack, tmp_path: Any) -> None:
    """SIGHUP (request_registry_reload) or a changed file re-reads the registry; a broken one is ignored."""
    from pathlib import Path

    from ingest.registry import RegistryHolder

    reg_file = Path(tmp_path) / "devices.toml"
    reg_file.write_text("q1")
    moved = TFleet(dict(stack.fleet.centres), dict(stack.fleet.counters), dict(stack.fleet.devices))

    def loader(path: Path) -> TFleet:
        text = (path / "devices.toml").read_text()
        if text == "broken":
            raise ValueError("devices.toml: device.x: broken")
        moved.devices[stack.dev("a2")] = TDevice(stack.dev("a2"), stack.qa, text)
        return moved

    holder = RegistryHolder.from_path(Path(tmp_path), "p", loader=loader)
    original = stack.svc.registry.registry
    try:
        stack.svc.registry.replace(holder.registry)
        walk, eid = r_msg(stack, stack.dev("a2"), "q2", None)  # a2 is now registered at q1
        stack.send([walk])
        wait_until(lambda: stack.db.rows(f'SELECT * FROM "rejected" WHERE "reason" = \'wrong_counter\' '
                                         f'AND "payload" =~ /{eid}/'), what="wrong_counter before the move")
        reg_file.write_text("broken")
        assert holder.changed_on_disk()
        assert not holder.reload() and holder.registry is moved, "a broken registry keeps the previous one"
        reg_file.write_text("q2")
        assert holder.reload() and holder.reloads == 1
    finally:
        stack.svc.registry.replace(original)


def test_clock_ahead_is_corrected_and_a_redelivery_rewrites_the_same_point(stack: Stack) -> None:
    ahead = now_ms() + 3_600_000  # the device clock runs an hour ahead
    tk = t(stack, "ahead")
    m, eid = r_msg(stack, stack.dev("a1"), "q1", tk, closed_at=ahead - 3000, rated_at=ahead, sent_at=ahead + 50)
    stack.send([close(stack, "q1", tk), m])
    first = wait_until(lambda: stack.ratings().get(eid), what="the corrected rating")
    assert first["clock_corrected"] is True and abs(first["time"] - now_ms()) < 5000
    before = stack.svc.stats.ratings
    stack.send([m])  # redelivered later: its offset differs, its point must not
    wait_until(lambda: stack.svc.stats.ratings > before and stack.svc.stats.in_flight == 0,
               what="redelivery accepted and acked")
    rows = stack.db.rows(f'SELECT * FROM "rating" WHERE "event_id" = \'{eid}\'')
    assert [r["time"] for r in rows] == [first["time"]]
