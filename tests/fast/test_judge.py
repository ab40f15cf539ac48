"""The rating judge in-process: every refusal reason, a daily-reset ticket, a recall, holds.

The real MessageHandler (parse -> registry check -> ticket index -> clock -> verdict -> points)
runs without a broker or a database: messages go in as (topic, payload bytes, arrival), verdicts
come out. The same rules are tested end to end against the real Mosquitto and InfluxDB in
tests/ingest/; here each rule is one row of a table and the whole file runs in about a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from broker.contract import QmsEvent, new_event_id, qms_topic, rating_topic, status_topic
from ingest.config import IngestConfig
from ingest.handlers import Handled, MessageHandler
from ingest.registry import RegistryHolder
from ingest.stats import IngestStats
from tests.support.ingest import TCentre, TCounter, TDevice, TFleet

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
# a fixed morning: 2026-12-07 10:00 in Hanoi (no wall clock in these tests)
TODAY_10 = int(datetime(2026, 12, 7, 10, 0, tzinfo=HCM).timestamp() * 1000)
DAY = 86_400_000

QMS, NOQMS, WALKUP = "qc", "nc", "wc"
FLEET = (TFleet()
         .add(TCentre(QMS, has_qms=True), TDevice("qc-t1", QMS, "q1"), TDevice("qc-t2", QMS, "q2"),
              TDevice("qc-old", QMS, "q3", retired=True))
         .add(TCentre(NOQMS, has_qms=False), TDevice("nc-t1", NOQMS, "q1"))
         .add(TCentre(WALKUP, has_qms=False, walkup_allowed=True), TDevice("wc-t1", WALKUP, "q1"))
         .add(TCentre("oc", has_qms=False), TDevice("oc-t1", "oc", "q1"))
         .officer("cb1", "Nguyễn Văn An", QMS).officer("cb2", "Trần Thị Bình", QMS))
FLEET.counters[("oc", "q1")] = TCounter("q1", "Quầy 1", officer="cb9")  # a counter with a fixed officer


@dataclass
class Judge:
    """One MessageHandler whose clock the test sets (``now``: epoch ms)."""

    now: int = TODAY_10
    hold_grace_s: float = 10.0
    seq: int = 0
    handler: MessageHandler = field(init=False)

    def __post_init__(self) -> None:
        cfg = IngestConfig.model_validate({"integrity": {"hold_grace_s": self.hold_grace_s}})
        self.handler = MessageHandler(cfg, IngestStats(), lambda: self.now * 1_000_000, RegistryHolder(FLEET, "p"))

    def close(self, counter: str, number: str, at: int, officer: str = "cb1", centre: str = QMS,
              ticket_id: str | None = None) -> str:
        ev = QmsEvent(v=1, type="ticket_closed", counter=counter, officer=officer, ticket=number,
                      service="ho-tich", ticket_id=ticket_id, at=at)
        return self.handler.handle(qms_topic(centre, counter), ev.to_json(), at * 1_000_000).outcome

    def payload(self, device: str, counter: str, number: str | None, rated: int, **changes: Any) -> dict[str, Any]:
        self.seq += 1
        centre = FLEET.devices[device].centre if device in FLEET.devices else QMS
        return {"v": 1, "event_id": new_event_id(), "seq": self.seq, "device": device, "centre": centre,
                "counter": counter, "officer": "cb1", "ticket": number, "service": "ho-tich", "dossier": None,
                "scale": 4, "score": 4, "reasons": [], "input": "touch",
                "closed_at": rated - 3000 if number else None, "rated_at": rated, "sent_at": rated,
                "boot_id": "fast-boot", "mono_ms": 5000} | changes

    def rate(self, doc: dict[str, Any], topic: str | None = None, received: int | None = None) -> Handled:
        topic = topic or rating_topic(doc["centre"], doc["device"])
        return self.handler.handle(topic, json.dumps(doc).encode(), (received or doc["rated_at"]) * 1_000_000)


def outcome(h: Handled) -> str:
    return h.outcome.removeprefix("rejected:")


# ----------------------------------------------------------------- every refusal reason, one row each

def _dup(j: Judge) -> Handled:
    j.close("q1", "A001", TODAY_10 - 5000)
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10))) == "rating"
    return j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10 + 1000))


def _conflict(j: Judge) -> Handled:
    j.close("q1", "A002", TODAY_10 - 5000)
    doc = j.payload("qc-t1", "q1", "A002", TODAY_10)
    assert outcome(j.rate(doc)) == "rating"
    return j.rate(doc | {"score": 1})


def _outside(j: Judge) -> Handled:
    j.close("q1", "A003", TODAY_10 - 120_000)  # closed 2 min ago, the window is 60 s
    j.now = TODAY_10 + 11_000  # past hold_grace_s: no later close of A003 can still arrive
    return j.rate(j.payload("qc-t1", "q1", "A003", TODAY_10), received=TODAY_10)


def _unknown_ticket(j: Judge) -> Handled:
    doc = j.payload("qc-t1", "q1", "Z999", TODAY_10)
    assert j.rate(doc).outcome == "held", "first held: its close may still be on its way"
    j.now = TODAY_10 + 11_000  # past hold_grace_s
    return j.rate(doc, received=TODAY_10)


def _officer_mismatch(j: Judge) -> Handled:
    # without a QMS the counter's registry officer (cb9 at oc/q1) is credited; a rating naming another is refused
    return j.rate(j.payload("oc-t1", "q1", "B001", TODAY_10))


REFUSALS: list[tuple[str, Any, str]] = [
    ("not JSON", lambda j: j.handler.handle(rating_topic(QMS, "qc-t1"), b"{not json", TODAY_10 * 1_000_000),
     "malformed_json"),
    ("score above the scale", lambda j: j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10, score=7)),
     "invalid_field"),
    ("topic of another device", lambda j: j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10),
                                                 topic=rating_topic(QMS, "qc-t2")), "topic_mismatch"),
    ("bad topic", lambda j: j.handler.handle("hl/v1/QC!/x/rating", b"{}", TODAY_10 * 1_000_000), "bad_topic"),
    ("device not in the registry", lambda j: j.rate(j.payload("ghost", "q1", "A001", TODAY_10)),
     "unknown_device"),
    ("retired device", lambda j: j.rate(j.payload("qc-old", "q3", "A001", TODAY_10)), "retired_device"),
    ("device's own centre, other counter", lambda j: j.rate(j.payload("qc-t1", "q2", "A001", TODAY_10)),
     "wrong_counter"),
    ("device under another centre", lambda j: j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10, centre=NOQMS),
                                                     topic=rating_topic(NOQMS, "qc-t1")), "wrong_centre"),
    ("walk-up where not allowed", lambda j: j.rate(j.payload("qc-t1", "q1", None, TODAY_10)),
     "walkup_not_allowed"),
    ("second rating of one ticket", _dup, "duplicate_ticket"),
    ("one event id, other content", _conflict, "conflicting_event"),
    ("rated after the window", _outside, "outside_window"),
    ("no close within the hold grace", _unknown_ticket, "unknown_ticket"),
    ("rated after it was sent", lambda j: j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10,
                                                           sent_at=TODAY_10 - 60_000)), "absurd_timestamp"),
    ("registry officer differs (no QMS)", _officer_mismatch, "officer_mismatch"),
]


@pytest.mark.parametrize(("case", "send", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_names_its_reason(case: str, send: Any, reason: str) -> None:
    j = Judge()
    handled = send(j)
    assert handled.outcome == f"rejected:{reason}", case
    (point,) = handled.points  # stored as a rejected point, never silently dropped
    line = point.to_line()
    assert line.startswith("rejected,") and f"reason={reason}" in line, line
    assert j.handler.stats.rejected[reason] >= 1


def test_walkup_accepted_where_configured_and_never_credited() -> None:
    j = Judge()
    h = j.rate(j.payload("wc-t1", "q1", None, TODAY_10, centre=WALKUP))
    assert outcome(h) == "rating"
    assert "walkup=true" in h.points[0].to_line()


# ----------------------------------------------------------------- ticket instances

def test_daily_reset_a_number_from_yesterday_is_another_ticket() -> None:
    """A001 closed yesterday and rated, A001 closed today: today's rating binds to today's close."""
    j = Judge(now=TODAY_10 - DAY)
    j.close("q1", "A001", TODAY_10 - DAY - 4000, officer="cb2")
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10 - DAY))) == "rating"
    j.now = TODAY_10
    j.close("q1", "A001", TODAY_10 - 4000, officer="cb1")
    h = j.rate(j.payload("qc-t1", "q1", "A001", TODAY_10, officer="cb2"))
    assert outcome(h) == "rating", "not a duplicate of yesterday's A001"
    line = h.points[0].to_line()
    assert "officer=cb1" in line, "credited to today's serving officer (the QMS close), not yesterday's"
    assert 'terminal_officer="cb2"' in line, "the terminal's disagreeing officer is kept for integrity"


def test_a_recall_is_served_once_and_rated_once() -> None:
    j = Judge()
    assert j.close("q1", "A010", TODAY_10 - 30_000) == "ticket"
    assert j.close("q1", "A010", TODAY_10 - 10_000) == "reclosed", "a re-close of the same ticket"
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A010", TODAY_10))) == "rating"
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A010", TODAY_10 + 2000))) == "duplicate_ticket"
    assert j.handler.stats.tickets == 1


def test_the_vendor_ticket_id_separates_two_tickets_with_one_number() -> None:
    j = Judge()
    j.close("q1", "A020", TODAY_10 - 9000, ticket_id="V-1")
    j.close("q1", "A020", TODAY_10 - 4000, ticket_id="V-2")
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A020", TODAY_10, ticket_id="V-1"))) == "rating"
    assert outcome(j.rate(j.payload("qc-t1", "q1", "A020", TODAY_10, ticket_id="V-2"))) == "rating"


def test_a_rating_before_its_close_is_held_then_counted() -> None:
    j = Judge()
    doc = j.payload("qc-t1", "q1", "A030", TODAY_10)
    assert j.rate(doc).outcome == "held"
    j.close("q1", "A030", TODAY_10 - 2000)
    j.now = TODAY_10 + 1000
    assert outcome(j.rate(doc, received=TODAY_10)) == "rating"


def test_a_redelivered_rating_is_the_identical_point() -> None:
    j = Judge()
    j.close("q1", "A040", TODAY_10 - 2000)
    doc = j.payload("qc-t1", "q1", "A040", TODAY_10)
    first, again = j.rate(doc), j.rate(doc)
    assert outcome(first) == outcome(again) == "rating"
    assert first.points[0].to_line() == again.points[0].to_line(), "idempotent write: same point"
    assert j.handler.stats.ratings == 2 and "duplicate_ticket" not in j.handler.stats.rejected


def test_a_not_satisfied_rating_is_escalated_once_with_the_officer_name() -> None:
    j = Judge()
    j.close("q1", "A050", TODAY_10 - 2000)
    doc = j.payload("qc-t1", "q1", "A050", TODAY_10, score=1, reasons=["thai_do"])
    first, again = j.rate(doc), j.rate(doc)
    assert [p.measurement for p in again.points] == ["rating"], "not escalated again on redelivery"
    (escalation,) = (p.to_line() for p in first.points if p.measurement == "escalation")
    assert "officer_name=Nguyễn\\ Văn\\ An" in escalation and "ticket=A050" in escalation, escalation
    assert j.handler.escalations == 1


def test_a_complaint_arriving_hours_late_is_told_as_late_not_paged() -> None:
    j = Judge(now=TODAY_10 + 2 * 3_600_000)
    j.close("q1", "A060", TODAY_10 - 2000)
    doc = j.payload("qc-t1", "q1", "A060", TODAY_10, score=1, sent_at=TODAY_10 + 2 * 3_600_000)
    h = j.rate(doc, received=TODAY_10 + 2 * 3_600_000)
    kinds = [p.measurement for p in h.points]
    assert "escalation" not in kinds and j.handler.escalations == 0, kinds
    assert len(kinds) == 3 and j.handler.stats.late_escalations == 1, kinds


def test_statuses_of_a_device_are_checked_against_its_topic() -> None:
    j = Judge()
    status = {"v": 1, "device": "qc-t2", "centre": QMS, "online": True, "at": TODAY_10}
    h = j.handler.handle(status_topic(QMS, "qc-t1"), json.dumps(status).encode(), TODAY_10 * 1_000_000)
    assert h.outcome.startswith("rejected:"), h.outcome
