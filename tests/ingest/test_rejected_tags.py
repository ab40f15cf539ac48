"""Issue 15.8: a ``rejected`` point carries every tag the Rejections panel filters by.

Real Mosquitto, InfluxDB and ingest: province from the registry (via the centre), counter, officer
and service from the payload (the terminal's claim; "" when unreadable), device from the topic,
for a rule refusal, a malformed pretty-printed rating and a payload that is no JSON at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from hailong.localstack import InfluxServer, MosquittoServer
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms
from tests.support.judging import Judged, judging, new_uid
from tests.support.waiting import wait_until

TAGS = ("reason", "province", "centre", "counter", "officer", "service", "device")


@pytest.fixture(scope="module")
def j(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[Judged]:
    uid = new_uid()
    fleet = TFleet().add(TCentre(f"qc{uid}", province="hue"), TDevice(f"d1{uid}", f"qc{uid}", "q1"))
    fleet.add(TCentre(f"hn{uid}", province="ha-noi"), TDevice(f"h1{uid}", f"hn{uid}", "q7"))
    fleet.officer("cb1", "Nguyễn Thị Lan", f"qc{uid}")
    with judging(mosquitto, influx_server, "rejtags", uid, fleet, integrity={"hold_grace_s": 1}) as judged:
        yield judged


def rejected(j: Judged, marker: str) -> dict[str, str]:
    q = f'SELECT * FROM "rejected" WHERE "payload" =~ /{marker}/'
    rows = wait_until(lambda: j.db.rows(q), 20, what=f"the rejection of {marker}")
    assert rows is not None and len(rows) == 1, rows
    return {k: rows[0].get(k) or "" for k in TAGS}


def test_a_rule_refused_rating_carries_province_counter_officer_service_and_device(j: Judged) -> None:
    centre, device = f"qc{j.uid}", f"d1{j.uid}"
    msg, eid = j.rating(centre, device, "q1", "NOCLOSE1", rated=now_ms(), officer="cb1", service="dat-dai")
    j.send([msg])  # no ticket_closed ever comes: unknown_ticket after the hold
    assert rejected(j, eid) == {"reason": "unknown_ticket", "province": "hue", "centre": centre, "counter": "q1",
                                "officer": "cb1", "service": "dat-dai", "device": device}


def test_a_malformed_pretty_printed_rating_still_names_its_counter_officer_and_service(j: Judged) -> None:
    centre, device = f"hn{j.uid}", f"h1{j.uid}"
    (topic, payload), eid = j.rating(centre, device, "q7", "A1", rated=now_ms(), officer="cb-x", score=5)
    pretty = json.dumps(json.loads(payload), indent=2).encode()  # score 5 on a 4-level scale: malformed
    j.send([(topic, pretty)])
    assert rejected(j, eid) == {"reason": "invalid_field", "province": "ha-noi", "centre": centre, "counter": "q7",
                                "officer": "cb-x", "service": "ho-tich", "device": device}


def test_an_unreadable_payload_has_empty_officer_and_service_but_its_province(j: Judged) -> None:
    centre, device = f"hn{j.uid}", f"h1{j.uid}"
    marker = f"garbage{j.uid}"
    j.send([(f"hl/v1/{centre}/{device}/rating", f'{{"officer": "cb1", {marker}'.encode())])
    got = rejected(j, marker)
    assert got["province"] == "ha-noi" and got["device"] == device and got["centre"] == centre
    assert (got["officer"], got["service"], got["counter"]) == ("", "", "")


def test_a_claim_that_is_no_id_does_not_become_a_tag(j: Judged) -> None:
    centre, device = f"qc{j.uid}", f"d1{j.uid}"
    (topic, payload), eid = j.rating(centre, device, "q1", "A2", rated=now_ms(), officer="Nguyễn Văn A")
    j.send([(topic, payload)])
    got = rejected(j, eid)
    assert got["reason"] == "invalid_field" and got["officer"] == "" and got["province"] == "hue"
