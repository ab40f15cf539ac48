"""The ingest's rule 9 with web ratings published as the web service publishes them (hl/v1/C/web/rating): a vendor
ticket id binds to that ticket only, a rating after its link's expiry is link_expired, a centre without a QMS cannot
bind one, and after an ingest restart the ticket is still known to be rated (first wins across restarts too)."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from broker.contract import web_rating_topic
from broker.fleet.registry import load_registry
from tests.support.ingest import start_ingest, write_fleet
from tests.support.judging import Judged, judging, mqtt_settings, new_uid
from tests.support.waiting import wait_until

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def web(j: Judged, centre: str, ticket: str, *, rated: int, ticket_id: str | None = None,
        expires: int | None = None, score: int = 2) -> tuple[tuple[str, bytes], str]:
    eid = str(uuid.uuid4())
    day = dt.datetime.fromtimestamp(rated / 1000, HCM).date().isoformat()
    data: dict[str, Any] = {
        "v": 1, "event_id": eid, "seq": next(j.seq), "device": "web", "centre": centre, "counter": "web",
        "officer": "web", "ticket": ticket, "ticket_id": ticket_id, "scale": 4, "score": score, "reasons": [],
        "input": "web", "source": "sms", "service_day": day,
        "link_expires_at": expires if expires is not None else rated + 86_400_000, "closed_at": None,
        "rated_at": rated, "sent_at": rated, "boot_id": "web-test", "mono_ms": 1000}
    return (web_rating_topic(centre), json.dumps(data).encode()), eid


def test_vendor_id_expiry_and_no_qms(mosquitto: Any, influx_server: Any, tmp_path: Any) -> None:
    uid = new_uid()
    qms, plain = f"q-{uid}", f"p-{uid}"
    fleet = write_fleet(tmp_path / "f", qms, [(f"t-{uid}", "q1")], has_qms=True)
    other = write_fleet(tmp_path / "g", plain, [(f"n-{uid}", "q1")], has_qms=False)
    reg = load_registry(fleet)
    reg.centres.update(load_registry(other).centres)
    with judging(mosquitto, influx_server, "webrules", uid, reg) as j:
        now = time.time_ns() // 1_000_000
        j.send([j.close(qms, "q1", "V-1", now - 9000, officer="cb-a", ticket_id="vendor-1"),
                j.close(qms, "q1", "V-1", now - 5000, officer="cb-b", ticket_id="vendor-2")])
        bound, bound_eid = web(j, qms, "V-1", rated=now, ticket_id="vendor-1")
        late, late_eid = web(j, qms, "V-1", rated=now, ticket_id="vendor-2", expires=now - 1)
        none, none_eid = web(j, plain, "V-1", rated=now)
        j.send([bound, late, none])
        assert j.outcomes([bound_eid, late_eid, none_eid]) == {
            bound_eid: "rating", late_eid: "link_expired", none_eid: "unknown_ticket"}
        row = j.ratings()[0]
        assert (row["officer"], row["ticket_id"], row["counter"]) == ("cb-a", "vendor-1", "q1")  # not cb-b's ticket


def test_a_web_rating_is_remembered_across_an_ingest_restart(mosquitto: Any, influx_server: Any,
                                                            tmp_path: Any) -> None:
    uid = new_uid()
    centre = f"r-{uid}"
    fleet = write_fleet(tmp_path / "f", centre, [(f"t-{uid}", "q1")], has_qms=True)
    reg = load_registry(fleet)
    with judging(mosquitto, influx_server, "webrestart", uid, reg) as j:
        now = time.time_ns() // 1_000_000
        j.send([j.close(centre, "q1", "R-7", now - 20_000, officer="cb-a")])
        first, first_eid = web(j, centre, "R-7", rated=now - 10_000)
        j.send([first])
        assert j.outcomes([first_eid]) == {first_eid: "rating"}
        j.services[0].stop()
        j.services[0] = start_ingest(mqtt_settings(mosquitto), j.db, uid + "b", fleet=reg)
        again, again_eid = web(j, centre, "R-7", rated=now)
        j.send([again, first])  # another phone rating of the ticket, and the first one redelivered
        assert j.outcomes([again_eid]) == {again_eid: "duplicate_ticket"}
        # the redelivered first one judged and its point written too (acked after the write), not a sleep
        stats = j.services[0].stats
        wait_until(lambda: stats.received >= 2 and stats.in_flight == 0,
                   what="the restarted ingest to write and ack both messages")
        rows = j.ratings()
        assert [(r["event_id"], r["counter"], r["officer"]) for r in rows] == [(first_eid, "q1", "cb-a")]


def test_a_web_not_satisfied_is_told_as_a_post_visit_complaint_not_paged(mosquitto: Any, influx_server: Any,
                                                                        tmp_path: Any) -> None:
    """The urgent page (escalation) and the burst of taps at a counter (complaint) are for a citizen still at the
    counter; a phone's "Không hài lòng" comes after the visit: one late_escalation point, device "web", credited
    to the close's counter and officer, late_by = how long after the close."""
    uid = new_uid()
    centre = f"e-{uid}"
    device = f"t-{uid}"
    fleet = write_fleet(tmp_path / "f", centre, [(device, "q1")], has_qms=True)
    with judging(mosquitto, influx_server, "webcomplaint", uid, load_registry(fleet)) as j:
        now = time.time_ns() // 1_000_000
        two_days_ago = now - 2 * 86_400_000 - 3 * 3_600_000
        j.send([j.close(centre, "q1", "P-3", two_days_ago, officer="cb-a"),
                j.close(centre, "q1", "P-4", now - 5000, officer="cb-b")])
        phone, phone_eid = web(j, centre, "P-3", rated=now, score=1)
        data = json.loads(phone[1])  # the helper's service day is the rating's: the link's is the close's
        data["service_day"] = dt.datetime.fromtimestamp(two_days_ago / 1000, HCM).date().isoformat()
        phone = (phone[0], json.dumps(data).encode())
        tap, tap_eid = j.rating(centre, device, "q1", "P-4", rated=now - 2000, officer="cb-b", score=1)
        j.send([phone, tap])
        assert j.outcomes([phone_eid, tap_eid]) == {phone_eid: "rating", tap_eid: "rating"}
        assert j.escalations(phone_eid) == [] and len(j.escalations(tap_eid)) == 1  # only the counter's is paged
        complaints = {r["event_id"] for r in j.db.rows('SELECT "event_id", "score" FROM "complaint"')}
        assert complaints == {tap_eid}
        late = wait_until(lambda: j.db.rows('SELECT * FROM "late_escalation"'), what="a late_escalation point")
        assert [(r["event_id"], r["device"], r["counter"], r["officer"], r["ticket"], r["late_by"]) for r in late] \
            == [(phone_eid, "web", "q1", "cb-a", "P-3", "2 ngày 3 giờ sau khi được phục vụ, qua điện thoại")]
        assert abs(int(late[0]["late_s"]) - (2 * 86_400 + 3 * 3600)) <= 1
