"""Links a counter terminal signs with its own counter's key (source terminal-qr), end to end: real broker, the
web service (HTTP, outbox, svc publisher), the real ingest, InfluxDB. A terminal's link of its own counter's
ticket is credited to the QMS officer; its key cannot make another counter's link (a clear page, nothing
stored), nor survive a forged counter field; a ticket served at another counter is refused by the ingest
(``wrong_counter``, stored in ``rejected``); a revoked counter's links stop at once."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import time

from broker import weblink
from broker.fleet.credentials import FleetState
from tests.web.conftest import HCM, WebStack


def _terminal_link(s: WebStack, ticket: str, counter: str, *, signer_counter: str | None = None) -> str:
    """What the terminal at ``signer_counter`` (default: ``counter``) makes with its provisioned key."""
    key_id, secret = weblink.parse_terminal_secret(
        FleetState.for_fleet(s.fleet).terminal_link_secret(s.centre, signer_counter or counter))
    day = dt.datetime.now(HCM).date()
    link = weblink.TicketLink(s.centre, ticket, day, weblink.default_expiry(day, "Asia/Ho_Chi_Minh"),
                              counter=counter, source="terminal-qr")
    return weblink.sign(link, key_id, secret)


def _closed_ms() -> int:
    return time.time_ns() // 1_000_000 - 90_000


def test_a_terminal_signed_link_lands_credited_to_the_qms_officer(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    j.send([j.close(s.centre, s.counter, "T-101", _closed_ms(), officer="cb-lan", service="ho-tich")])
    token = _terminal_link(s, "T-101", s.counter)
    page = s.http.get(f"/r/{token}")
    assert page.status_code == 200 and "T-101" in page.text and 'name="score"' in page.text
    reply = s.submit(token, 2, ("thoi_gian_cho",))
    assert reply.status_code == 200 and "Cảm ơn" in reply.text
    eid = weblink.event_id(token)
    assert j.outcomes([eid]) == {eid: "rating"}
    row = j.ratings()[0]
    assert (row["counter"], row["officer"], row["service"], row["source"], row["input"], row["score"]) == (
        s.counter, "cb-lan", "ho-tich", "terminal-qr", "web", 2)


def test_a_terminal_key_cannot_make_another_counters_link_nor_a_forged_counter(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    j.send([j.close(s.centre, "q2", "T-202", _closed_ms(), officer="cb-minh")])
    # the q1 terminal's key signing a link that names q2: the tag is checked under q2's key
    other = _terminal_link(s, "T-202", "q2", signer_counter=s.counter)
    # a genuine q1 link whose counter bytes were edited to q2 (same length): the tag no longer matches
    own = _terminal_link(s, "T-202", s.counter)
    raw = base64.urlsafe_b64decode(own + "=" * (-len(own) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b"\x02q1", b"\x02q2")).rstrip(b"=").decode()
    assert weblink.decode(forged).link.counter == "q2"
    # and the q1 terminal's key cannot make a slip link (source qr) either
    slip = dataclasses.replace(weblink.decode(own).link, source="qr", counter=None)
    slip_token = weblink.sign(slip, *weblink.parse_terminal_secret(
        FleetState.for_fleet(s.fleet).terminal_link_secret(s.centre, s.counter)))
    for token in (other, forged, slip_token):
        for reply in (s.http.get(f"/r/{token}"), s.submit(token, 4)):
            assert reply.status_code == 404
            assert "Đường dẫn không hợp lệ" in reply.text and 'name="score"' not in reply.text
    assert s.service.outbox.depth() == 0 and s.service.publisher.acked_count == 0
    time.sleep(0.5)
    assert j.ratings() == [] and j.db.rows('SELECT * FROM "rejected"') == []


def test_a_terminal_link_for_a_ticket_served_at_another_counter_is_refused_by_the_ingest(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    j.send([j.close(s.centre, "q2", "T-303", _closed_ms(), officer="cb-minh")])
    token = _terminal_link(s, "T-303", s.counter)  # the q1 terminal offering a ticket q2 served
    reply = s.submit(token, 1, ("thai_do",))
    assert reply.status_code == 200  # the web service cannot know where the ticket was closed; the ingest does
    eid = weblink.event_id(token)
    assert j.outcomes([eid]) == {eid: "wrong_counter"}
    rejected = j.db.rows('SELECT * FROM "rejected"')
    assert len(rejected) == 1 and rejected[0]["reason"] == "wrong_counter"
    assert j.ratings() == []


def test_revoking_a_stolen_terminals_counter_stops_its_links_at_once(web_stack: WebStack) -> None:
    s = web_stack
    q1 = _terminal_link(s, "T-404", s.counter)
    q2 = _terminal_link(s, "T-405", "q2")
    assert s.http.get(f"/r/{q1}").status_code == 200
    time.sleep(1.1)  # a new mtime for the key file the service caches
    FleetState.for_fleet(s.fleet).rotate_link_key(s.centre, revoke_counters=(s.counter,))
    refused = s.http.get(f"/r/{q1}")
    assert refused.status_code == 404 and "Đường dẫn không hợp lệ" in refused.text
    assert s.http.get(f"/r/{q2}").status_code == 200  # the other counters' terminals keep working
    assert s.http.get(f"/r/{_terminal_link(s, 'T-406', s.counter)}").status_code == 200  # re-provisioned
