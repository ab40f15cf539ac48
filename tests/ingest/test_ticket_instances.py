"""Ticket instances and attribution against the real broker and InfluxDB (issue 10).

Each case is a script of QMS closes and ratings with the outcome every rating must have, the
``ticket`` points its numbers must leave and, for accepted ratings, the officer/service/close they
are credited with. Numbers restart daily (service day in the centre's time zone), per prefix, wrap
within a day; a vendor ticket id is the identity when sent; a recall is served once and rated once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hailong.localstack import InfluxServer, MosquittoServer
from tests.support.ingest import TCentre, TDevice, TFleet, start_ingest
from tests.support.judging import Judged, Msg, judging, local_ms, mqtt_settings, new_uid
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Close:
    number: str
    at: int
    counter: str = "q1"
    officer: str = "cb1"
    service: str | None = "ho-tich"
    ticket_id: str | None = None


@dataclass(frozen=True)
class Rate:
    number: str
    rated: int
    expect: str  # "rating" or the rejection reason
    counter: str = "q1"
    officer: str = "cb1"  # what the terminal claims
    service: str | None = "ho-tich"
    closed: int | None = None  # the device's closed_at (default: rated - 3 s)
    ticket_id: str | None = None
    credited: str | None = None  # expected officer tag (default: the terminal's)
    served_as: str | None = None  # expected service tag
    bound_to: int | None = None  # expected closed_at_ms (the QMS close it answers)
    score: int = 4
    sent: int | None = None  # the device's sent_at (default: now, i.e. it waited in the terminal's outbox)


@dataclass
class Case:
    steps: list[Close | Rate]
    tickets: dict[str, int]  # number -> ticket points expected
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


D3, D2, D1 = (local_ms(d, 9) for d in (3, 2, 1))
S = 1000
CASES: dict[str, Case] = {
    "daily reset over 3 service days": Case([
        Close("A001", D3), Close("A001", D2), Close("A001", D1),
        Rate("A001", D3 + 5 * S, "rating", bound_to=D3), Rate("A001", D2 + 5 * S, "rating", bound_to=D2),
        Rate("A001", D1 + 5 * S, "rating", bound_to=D1),
        Rate("A001", D2 + 20 * S, "duplicate_ticket"),  # a second press for day 2's A001
    ], {"A001": 3}),
    "service day is the centre's local day (23:50 and 00:10 are two days)": Case([
        Close("M001", local_ms(3, 23, 50)), Close("M001", local_ms(2, 0, 10)),
        Rate("M001", local_ms(3, 23, 50, 4), "rating"), Rate("M001", local_ms(2, 0, 10, 4), "rating"),
    ], {"M001": 2}),
    "numbers restart per queue prefix": Case([
        Close("PA001", D2 + 60 * S), Close("PB001", D2 + 61 * S, counter="q2"),
        Rate("PA001", D2 + 64 * S, "rating"), Rate("PB001", D2 + 64 * S, "rating", counter="q2"),
    ], {"PA001": 1, "PB001": 1}),
    "wrap within a day": Case([
        Close("W001", local_ms(2, 8)), Close("W001", local_ms(2, 15)),
        Rate("W001", local_ms(2, 8, 0, 10), "rating", bound_to=local_ms(2, 8)),
        Rate("W001", local_ms(2, 15, 0, 10), "rating", bound_to=local_ms(2, 15)),
    ], {"W001": 2}),
    "vendor ticket id is the identity": Case([
        Close("V001", D2 + 100 * S, ticket_id="vid-1"), Close("V001", D2 + 220 * S, ticket_id="vid-2"),
        Rate("V001", D2 + 104 * S, "rating", ticket_id="vid-1"), Rate("V001", D2 + 224 * S, "rating"),
        Rate("V001", D2 + 230 * S, "duplicate_ticket", ticket_id="vid-2"),
    ], {"V001": 2}),
    "a rating naming a vendor id waits for that ticket's close": Case([
        Close("V002", D2 + 300 * S, ticket_id="vb-1"), Rate("V002", D2 + 304 * S, "rating"),
        Rate("V002", D2 + 330 * S, "rating", ticket_id="vb-2", bound_to=D2 + 328 * S),  # overtakes its close
        Close("V002", D2 + 328 * S, ticket_id="vb-2"),
    ], {"V002": 2}),
    "recall/re-close is served once and rated once": Case([
        Close("R001", D1 + 300 * S), Close("R001", D1 + 600 * S, counter="q2", officer="cb2"),
        Close("R001", D1 + 600 * S, counter="q2", officer="cb2"),  # the re-close redelivered
        Rate("R001", D1 + 604 * S, "rating", counter="q2", officer="cb2", bound_to=D1 + 600 * S),
        Rate("R001", D1 + 304 * S, "duplicate_ticket"),  # the first counter's terminal rates it too
    ], {"R001": 1}),
    "officer moved counters: the QMS officer is credited": Case([
        *[Close(f"K{i:03d}", D1 + (1000 + 100 * i) * S, counter="q3", officer="cb2") for i in range(6)],
        *[Rate(f"K{i:03d}", D1 + (1004 + 100 * i) * S, "rating", counter="q3", officer="cb1", credited="cb2")
          for i in range(6)],
    ], {f"K{i:03d}": 1 for i in range(6)}),
    # sent when rated, delivered now (it waited on the broker) and ahead of its close: held, then judged in
    # the batch that also brought a later close of its number; it answers the close before it was rated
    "a held rating of a replayed backlog binds to its own day's close, not the next day's": Case([
        Rate("H001", D2 + 405 * S, "rating", sent=D2 + 405 * S, bound_to=D2 + 400 * S),
        Close("H001", D2 + 400 * S), Close("H001", D1 + 400 * S),
    ], {"H001": 2}),
    "a held rating of a replayed backlog binds to the close, not its later recall": Case([
        Rate("H002", D2 + 508 * S, "rating", sent=D2 + 508 * S, bound_to=D2 + 500 * S),
        Close("H002", D2 + 500 * S), Close("H002", D2 + 560 * S),
    ], {"H002": 1}),
    "service comes from the QMS close": Case([
        Close("SV01", D1 + 2000 * S, service="dat-dai"), Close("SV02", D1 + 2100 * S, service=None),
        Rate("SV01", D1 + 2004 * S, "rating", service=None, served_as="dat-dai"),
        Rate("SV02", D1 + 2104 * S, "rating", service="ho-tich", served_as="ho-tich"),
    ], {"SV01": 1, "SV02": 1}),
}


@pytest.fixture(scope="module")
def judged(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[tuple[Judged, TFleet]]:
    uid = new_uid()
    qc = f"qc{uid}"
    fleet = TFleet().add(TCentre(qc, province="hue"), *[TDevice(f"d{i}{uid}", qc, f"q{i}") for i in (1, 2, 3)])
    fleet.officer("cb1", "Nguyễn Thị Lan", qc).officer("cb2", "Trần Văn Bình", qc)
    # the cases replay service days in the past: escalate them as if live (default: only within 1 h)
    integrity = {"hold_grace_s": 1.5, "escalate_within_s": 30 * 86_400}
    with judging(mosquitto, influx_server, "instances", uid, fleet, integrity=integrity) as j:
        yield j, fleet


def run_case(j: Judged, centre: str, case: Case, sent: dict[str, Msg] | None = None) -> dict[str, Rate]:
    msgs: list[Msg] = []
    rates: dict[str, Rate] = {}
    sent = sent if sent is not None else {}
    for step in case.steps:
        if isinstance(step, Close):
            msgs.append(j.close(centre, step.counter, step.number, step.at, step.officer, step.service,
                                step.ticket_id))
        else:
            m, eid = j.rating(centre, f"d{step.counter[1:]}{j.uid}", step.counter, step.number, rated=step.rated,
                              closed=step.closed, officer=step.officer, service=step.service,
                              ticket_id=step.ticket_id, score=step.score, sent=step.sent)
            msgs.append(m)
            rates[eid] = step
            sent[eid] = m
    # ratings in the order listed: the first rating of a ticket is the one that counts
    j.send(msgs)
    return rates


@pytest.mark.parametrize("name", list(CASES))
def test_ticket_instances(judged: tuple[Judged, TFleet], name: str) -> None:
    j, _ = judged
    centre = f"qc{j.uid}"
    case = CASES[name]
    rates = run_case(j, centre, case)
    got = j.outcomes(list(rates))
    assert got == {eid: r.expect for eid, r in rates.items()}
    stored = {r["event_id"]: r for r in j.ratings()}
    for eid, r in rates.items():
        if r.expect != "rating":
            continue
        row = stored[eid]
        assert row["officer"] == (r.credited or r.officer)
        assert row.get("terminal_officer") == (r.officer if r.credited and r.credited != r.officer else None)
        assert row.get("service") == (r.served_as or r.service)
        if r.bound_to is not None:
            assert row["closed_at_ms"] == r.bound_to
            assert row["response_ms"] == row["time"] - r.bound_to
    for number, count in case.tickets.items():
        points = j.db.rows(f'SELECT * FROM "ticket" WHERE "ticket" = \'{number}\'')
        assert len(points) == count, f"{number}: {points}"
    vendor = [c.ticket_id for c in case.steps if isinstance(c, Close) and c.ticket_id]
    if vendor:
        ids = {r["ticket_id"] for r in j.db.rows('SELECT * FROM "ticket" WHERE "ticket_id" =~ /./')}
        assert set(vendor) <= ids


def test_restart_rebuilds_the_same_instances(judged: tuple[Judged, TFleet], mosquitto: MosquittoServer) -> None:
    """A fresh ingest on the same database judges by the identities rebuilt from InfluxDB."""
    j, fleet = judged
    centre = f"qc{j.uid}"
    # its own ticket numbers (RB01, RC01, RD01): the module's other cases share the centre, in any order
    case = Case([Close("RB01", D1 + 5000 * S), Rate("RB01", D1 + 5004 * S, "rating", score=1),
                 Close("RC01", D1 + 6000 * S), Close("RC01", D1 + 6060 * S),  # RC01: a recall
                 Close("RD01", D2 + 20 * S), Rate("RD01", D2 + 24 * S, "rating")], {"RB01": 1, "RD01": 1})
    sent: dict[str, Msg] = {}
    first = run_case(j, centre, case, sent)
    assert set(j.outcomes(list(first)).values()) == {"rating"}
    old = j.services.pop()
    old.stop()
    # the same client id: the restarted service resumes its persistent session, as in production
    svc = start_ingest(mqtt_settings(mosquitto), j.db, j.uid, fleet=fleet,
                       integrity={"hold_grace_s": 1.5, "index_lookback_s": 7 * 86_400})
    j.services.append(svc)
    steps: list[Close | Rate] = [
        Close("RB01", D1 + 5300 * S, counter="q2"),  # a recall after the restart: still served once
        Rate("RB01", D1 + 5304 * S, "duplicate_ticket", counter="q2"),  # still rated once
        Rate("RD01", D2 + 30 * S, "duplicate_ticket"),  # day 2's RD01 was rated before the restart
        Close("RD01", local_ms(0, 0, 1)), Rate("RD01", local_ms(0, 0, 1) + 4 * S, "rating"),  # today's RD01
        # the recall closed before the restart is remembered: its rating binds to it (5 s, not 65 s)
        Rate("RC01", D1 + 6065 * S, "rating", sent=D1 + 6065 * S, bound_to=D1 + 6060 * S),
    ]
    rates = run_case(j, centre, Case(steps, {}))
    assert j.outcomes(list(rates)) == {eid: r.expect for eid, r in rates.items()}
    (rc01,) = (eid for eid, r in rates.items() if r.number == "RC01")
    assert j.ratings(f'WHERE "event_id" = \'{rc01}\'')[0]["closed_at_ms"] == D1 + 6060 * S
    assert len(j.db.rows('SELECT * FROM "ticket" WHERE "ticket" = \'RC01\'')) == 1, "a recall is served once"
    assert len(j.db.rows('SELECT * FROM "ticket" WHERE "ticket" = \'RB01\'')) == 1
    # the unhappy rating accepted before the restart, redelivered after it: identical point, no new escalation
    (eid,) = (e for e, r in first.items() if r.number == "RB01")
    before = svc.stats.ratings
    j.send([sent[eid]])
    wait_until(lambda: svc.stats.ratings > before, what="the redelivery accepted")
    assert len(j.ratings(f'WHERE "event_id" = \'{eid}\'')) == 1
    assert len(j.escalations(eid)) == 1
    assert svc.handler.escalations == 0
