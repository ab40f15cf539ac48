"""What a device may NOT do to the scores, and the escalation of every unhappy citizen (issues 12, 15).

Real Mosquitto and InfluxDB, one ingest: conflicting resends, the window measured from the QMS close,
walk-up officers checked against the registry, one escalation per accepted "Không hài lòng" stamped at
arrival (late and clock-behind terminals included, redeliveries excluded), per-device hold budgets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hailong.localstack import InfluxServer, MosquittoServer
from ingest.registry import local_time
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms
from tests.support.judging import Judged, judging, new_uid
from tests.support.waiting import wait_until

MAX_HELD = 5
BURST = 8


@pytest.fixture(scope="module")
def j(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[Judged]:
    uid = new_uid()
    qc, oc = f"qc{uid}", f"oc{uid}"
    fleet = TFleet().add(TCentre(qc, province="hue", walkup_allowed=True, name="Trung tâm Hành chính công Huế"),
                         *[TDevice(f"d{i}{uid}", qc, f"q{i}") for i in range(1, 10)])
    fleet.add(TCentre(oc, province="hue", has_qms=False), TDevice(f"o1{uid}", oc, "q1"), TDevice(f"o2{uid}", oc, "q2"))
    fleet.officer("cb1", "Nguyễn Thị Lan", qc).officer("cb2", "Trần Văn Bình", qc).officer("cx", "Lê Văn Xa", oc)
    with judging(mosquitto, influx_server, "guards", uid, fleet, integrity={
            "hold_grace_s": 1.5, "max_held_per_device": MAX_HELD, "hold_burst": BURST, "hold_rate_per_s": 0.01}) as jd:
        yield jd


def qc(j: Judged) -> str:
    return f"qc{j.uid}"


def dev(j: Judged, i: int) -> str:
    return f"d{i}{j.uid}"


def test_conflicting_resend_is_one_rating(j: Judged) -> None:
    """Issue 12.3: one event_id re-sent with scores 1, 2, 3 (new seq each time) -> 1 point + 2 conflicting_event."""
    now = now_ms()
    j.send([j.close(qc(j), "q1", "C001", now - 4000)])
    first, eid = j.rating(qc(j), dev(j, 1), "q1", "C001", rated=now - 1000, score=1, reasons=["cho_lau"])
    resends = [j.rating(qc(j), dev(j, 1), "q1", "C001", rated=now - 1000, score=s, event_id=eid)[0] for s in (2, 3)]
    j.send([first, *resends])
    rows = wait_until(lambda: len(j.db.rows(f'SELECT * FROM "rejected" WHERE "payload" =~ /{eid}/')) == 2
                      and j.db.rows(f'SELECT * FROM "rejected" WHERE "payload" =~ /{eid}/'), what="2 rejections")
    assert [r["reason"] for r in rows] == ["conflicting_event"] * 2
    assert {(r["counter"], r["device"], r["centre"]) for r in rows} == {("q1", dev(j, 1), qc(j))}
    assert '"score": 2' in rows[0]["payload"] or '"score": 3' in rows[0]["payload"], "payload stored as sent"
    stored = j.ratings(f'WHERE "event_id" = \'{eid}\'')
    assert [r["score"] for r in stored] == [1]
    assert len(j.escalations(eid)) == 1


@pytest.mark.parametrize("closed_ago_s, expect", [(7200, "outside_window"), (70, "outside_window"),
                                                  (30, "rating")])
def test_window_is_measured_from_the_qms_close(j: Judged, closed_ago_s: int, expect: str) -> None:
    """Issue 12.4: the device claims closed_at = rated_at - 3 s; the QMS close the ingest holds decides."""
    now = now_ms()
    number = f"WN{closed_ago_s}"
    m, eid = j.rating(qc(j), dev(j, 2), "q2", number, rated=now, closed=now - 3000)
    j.send([j.close(qc(j), "q2", number, now - closed_ago_s * 1000), m])
    assert j.outcomes([eid]) == {eid: expect}
    if expect == "rating":
        (row,) = j.ratings(f'WHERE "event_id" = \'{eid}\'')
        assert abs(row["response_ms"] - closed_ago_s * 1000) < 100


@pytest.mark.parametrize("claimed, stored", [("cx", None), ("khong-co", None), ("cb1", "cb1")])
def test_walkup_officer_must_be_registered_at_the_centre(j: Judged, claimed: str, stored: str | None) -> None:
    """Issue 12.5 / 15.3: another centre's officer or an unknown id is stored as "" and never escalated by name."""
    m, eid = j.rating(qc(j), dev(j, 4), "q4", None, rated=now_ms(), officer=claimed, score=1, reasons=["thai_do"])
    j.send([m])
    assert j.outcomes([eid]) == {eid: "rating"}
    (row,) = j.ratings(f'WHERE "event_id" = \'{eid}\'')
    assert row.get("officer") == stored and row["walkup"] == "true"
    (esc,) = wait_until(lambda: j.escalations(eid), what="the walk-up's escalation")
    assert esc.get("officer") == stored
    assert esc.get("officer_name") == ("Nguyễn Thị Lan" if stored else None)
    assert esc["walkup"] is True and esc.get("ticket") is None
    assert esc["counter_label"] == "Quầy q4" and esc["centre_name"] == "Trung tâm Hành chính công Huế"
    if stored is None:
        assert not j.db.rows(f'SELECT * FROM "escalation" WHERE "officer" = \'{claimed}\''), "never routed by name"


def test_escalation_once_even_when_redelivered(j: Judged) -> None:
    now = now_ms()
    m, eid = j.rating(qc(j), dev(j, 5), "q5", "E001", rated=now - 1000, sent=now, score=1, officer="cb2")
    j.send([j.close(qc(j), "q5", "E001", now - 4000, officer="cb1"), m])
    assert j.outcomes([eid]) == {eid: "rating"}
    svc = j.services[0]
    before = svc.stats.ratings
    topic, payload = m
    resent = payload.replace(f'"sent_at": {now}'.encode(), f'"sent_at": {now_ms()}'.encode())
    j.send([(topic, payload), (topic, resent)])  # the broker's redelivery and the outbox's re-stamped resend
    wait_until(lambda: svc.stats.ratings >= before + 2, what="both redeliveries accepted")
    assert len(j.ratings(f'WHERE "event_id" = \'{eid}\'')) == 1
    (esc,) = j.escalations(eid)
    assert esc["officer"] == "cb1" and esc["officer_name"] == "Nguyễn Thị Lan", "the QMS officer is escalated"
    assert esc["ticket"] == "E001"


@pytest.mark.parametrize("case", ["delivered 90 s late", "terminal clock 90 s behind"])
def test_late_and_clock_behind_ratings_escalate_on_arrival(j: Judged, case: str) -> None:
    """Issue 15.1: the escalation is stamped when it arrives, so a 60 s alert window sees it."""
    now = now_ms()
    number = "L001" if case.startswith("delivered") else "L002"
    # both messages say rated_at = sent_at = now - 90 s; only the QMS close tells them apart
    rated = now - 90_000
    close_at = rated - 3000 if case.startswith("delivered") else now - 4000
    m, eid = j.rating(qc(j), dev(j, 6), "q6", number, rated=rated, sent=rated, score=1, closed=rated - 3000)
    arrival = time.time_ns()
    j.send([j.close(qc(j), "q6", number, close_at), m])
    assert j.outcomes([eid]) == {eid: "rating"}
    (esc,) = j.escalations(eid)
    assert arrival - 1_000_000_000 <= esc["time"] <= time.time_ns(), "stamped at arrival, not at rated_at"
    assert esc["rated_at_ms"] == rated
    assert esc["rated_local"] == local_time(rated, "Asia/Ho_Chi_Minh")
    (row,) = j.ratings(f'WHERE "event_id" = \'{eid}\'')
    assert 0 <= row["response_ms"] <= 5000


def test_a_backlog_rated_hours_ago_is_counted_and_told_late_not_paged(j: Judged) -> None:
    """A terminal draining its outbox after a 2-hour outage: the citizen is gone, so no urgent page
    (integrity.escalate_within_s, default 1 h), but the complaint is told as a late one (centre, counter,
    officer, ticket, tap time, how late), counted in ingest_stats, and the rating counts like any other."""
    now = now_ms()
    rated = now - 2 * 3600_000
    m, eid = j.rating(qc(j), dev(j, 9), "q9", "B001", rated=rated, sent=now, score=1, closed=rated - 3000)
    handler = j.services[0].handler
    late_before = handler.stats.late_escalations
    arrival = time.time_ns()
    j.send([j.close(qc(j), "q9", "B001", rated - 3000), m])
    assert j.outcomes([eid]) == {eid: "rating"}
    assert j.escalations(eid) == []
    assert handler.stats.late_escalations == late_before + 1
    assert handler.stats.as_fields()["late_escalations"] == late_before + 1
    (late,) = j.db.rows(f'SELECT * FROM "late_escalation" WHERE "event_id" = \'{eid}\'', epoch="ns")
    assert arrival - 1_000_000_000 <= late["time"] <= time.time_ns(), "told at arrival"
    assert (late["centre"], late["counter"], late["ticket"], late["rated_at_ms"]) == (qc(j), "q9", "B001", rated)
    assert late["rated_local"] == local_time(rated, "Asia/Ho_Chi_Minh")
    assert 2 * 3600 <= late["late_s"] <= 2 * 3600 + 30 and late["late_by"] == "2 giờ 00 phút"
    (tap,) = j.db.rows(f'SELECT * FROM "complaint" WHERE "event_id" = \'{eid}\'', epoch="ns")
    assert tap["time"] // 1_000_000 == rated, "the complaint is stamped at its tap"
    (row,) = j.ratings(f'WHERE "event_id" = \'{eid}\'')
    assert row["class"] == "not_satisfied"


def test_one_device_cannot_hold_more_than_its_budget(j: Judged) -> None:
    """Issue 12.8: never-closed tickets from one device are capped; an honest device's early rating still counts."""
    now = now_ms()
    flood = [j.rating(qc(j), dev(j, 7), "q7", f"F{i:03d}", rated=now) for i in range(12)]
    honest, honest_id = j.rating(qc(j), dev(j, 8), "q8", "H001", rated=now)
    j.send([m for m, _ in flood] + [honest])
    wait_until(lambda: j.services[0].handler.judge.held_count(dev(j, 8)) == 1, what="honest rating held")
    j.send([j.close(qc(j), "q8", "H001", now - 2000)])
    got = j.outcomes([e for _, e in flood] + [honest_id])
    assert got.pop(honest_id) == "rating"
    assert sorted(got.values()) == ["hold_budget_exceeded"] * (12 - MAX_HELD) + ["unknown_ticket"] * MAX_HELD
    # the token bucket: BURST - MAX_HELD tokens are left (refill 0.01/s), so a second wave holds only 3
    wave = [j.rating(qc(j), dev(j, 7), "q7", f"G{i:03d}", rated=now_ms()) for i in range(MAX_HELD)]
    j.send([m for m, _ in wave])
    again = j.outcomes([e for _, e in wave])
    assert sorted(again.values()) == ["hold_budget_exceeded"] * (MAX_HELD - (BURST - MAX_HELD)) + [
        "unknown_ticket"] * (BURST - MAX_HELD)
    rows = j.db.rows(f'SELECT * FROM "rejected" WHERE "reason" = \'hold_budget_exceeded\' '
                     f'AND "device" = \'{dev(j, 7)}\' AND "counter" = \'q7\'')
    assert len(rows) == 12 - MAX_HELD + MAX_HELD - (BURST - MAX_HELD)


def test_without_qms_a_ticket_is_the_terminals_own_per_counter_and_day(j: Judged) -> None:
    """No QMS: the terminal numbers its tickets, so N-1 at two counters is two tickets; a second press is not."""
    oc, now = f"oc{j.uid}", now_ms()
    yesterday = now - 86_400_000
    cases = [("o1", "q1", now - 1000, now - 4000, "rating"), ("o2", "q2", now - 1000, now - 4000, "rating"),
             ("o1", "q1", now - 500, now - 4000, "duplicate_ticket"),
             ("o1", "q1", yesterday, yesterday - 3000, "rating")]
    sent = [j.rating(oc, f"{d}{j.uid}", q, "N-1", rated=rated, closed=closed, sent=now)
            for d, q, rated, closed, _ in cases]
    j.send([m for m, _ in sent])
    assert j.outcomes([e for _, e in sent]) == {e: c[-1] for (_, e), c in zip(sent, cases, strict=True)}
