"""The web channel's rules end to end: real broker, the web service (HTTP, outbox, svc publisher), the real ingest,
InfluxDB. One rating per ticket across channels (first wins), a web rating held until its close, forged/altered/expired
links refused with a page and nothing stored, a double submit one rating."""

from __future__ import annotations

import datetime as dt
import time

from broker import weblink
from broker.contract import WEB_DEVICE
from tests.support.judging import local_ms
from tests.web.conftest import HCM, WebStack


def _today_close_ms() -> int:
    return time.time_ns() // 1_000_000 - 60_000


def test_counter_first_then_web_is_one_rating_and_one_duplicate(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    closed = _today_close_ms()
    j.send([j.close(s.centre, s.counter, "A-101", closed, officer="cb-lan")])
    msg, counter_eid = j.rating(s.centre, s.device, s.counter, "A-101", rated=closed + 4000, closed=closed,
                                officer="cb-lan", score=4)
    j.send([msg])
    assert j.outcomes([counter_eid]) == {counter_eid: "rating"}
    token = s.link("A-101")
    page = s.http.get(f"/r/{token}")
    assert page.status_code == 200 and "A-101" in page.text
    thanks = s.submit(token, 1, ("thai_do",), "Chờ lâu quá")
    assert thanks.status_code == 200 and "Cảm ơn Quý khách!" in thanks.text
    web_eid = weblink.event_id(token)
    assert j.outcomes([web_eid]) == {web_eid: "duplicate_ticket"}
    rows = j.ratings()
    assert [(r["event_id"], r["score"], r["input"]) for r in rows] == [(counter_eid, 4, "touch")]


def test_web_before_the_close_is_held_then_credited_to_the_qms_officer(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    token = s.link("B-007", source="zalo")
    reply = s.submit(token, 1, ("huong_dan", "thu_tuc"), "Cần hướng dẫn rõ hơn")
    assert reply.status_code == 200 and "Cảm ơn" in reply.text
    s.wait_published()  # durable and PUBACKed before any close exists: the ingest holds it
    eid = weblink.event_id(token)
    time.sleep(1.0)
    assert j.outcome(eid) is None, "judged before its ticket was closed"
    closed = time.time_ns() // 1_000_000
    j.send([j.close(s.centre, "q2", "B-007", closed, officer="cb-minh", service="dat-dai")])
    assert j.outcomes([eid]) == {eid: "rating"}
    row = j.ratings()[0]
    assert (row["device"], row["counter"], row["officer"], row["service"]) == (WEB_DEVICE, "q2", "cb-minh", "dat-dai")
    assert (row["score"], row["class"], row["reasons"], row["input"], row["source"]) == (
        1, "not_satisfied", "huong_dan,thu_tuc", "web", "zalo")
    assert row["comment"] == "Cần hướng dẫn rõ hơn" and row["walkup"] == "false"
    # a counter rating of the same ticket afterwards loses: first wins across channels
    msg, late = j.rating(s.centre, f"u-{s.centre.removeprefix('hcc-')}", "q2", "B-007", rated=closed + 3000,
                         closed=closed, officer="cb-minh")
    j.send([msg])
    assert j.outcomes([late]) == {late: "duplicate_ticket"}


def test_forged_altered_and_expired_links_get_a_clear_page_and_store_nothing(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    good = s.link("C-001")
    altered = good[:20] + ("B" if good[20] != "B" else "C") + good[21:]
    forged = weblink.sign(weblink.decode(good).link, 1, b"\x00" * 32)
    for token in (altered, forged, "not-a-token", "A" * 300):
        for reply in (s.http.get(f"/r/{token}"), s.submit(token, 4)):
            assert reply.status_code == 404
            assert "Đường dẫn không hợp lệ" in reply.text and 'name="score"' not in reply.text
    yesterday = dt.datetime.now(HCM).date() - dt.timedelta(days=9)
    expired = s.link("C-002", day=yesterday, expires=int(time.time()) - 60)
    for reply in (s.http.get(f"/r/{expired}"), s.submit(expired, 4)):
        assert reply.status_code == 410 and "Đường dẫn đã hết hạn" in reply.text
    english = s.http.get(f"/r/{expired}", params={"lang": "en"})
    assert "This link has expired" in english.text
    assert s.service.outbox.depth() == 0 and s.service.publisher.acked_count == 0
    assert not any(s.service.outbox.seen(weblink.event_id(t)) for t in (forged, expired))
    time.sleep(0.5)
    assert j.ratings() == [] and j.db.rows('SELECT * FROM "rejected"') == []


def test_double_submit_is_one_rating_and_the_second_page_says_so(web_stack: WebStack) -> None:
    s, j = web_stack, web_stack.judged
    closed = local_ms(0, 8) if local_ms(0, 8) < time.time_ns() // 1_000_000 else _today_close_ms()
    j.send([j.close(s.centre, s.counter, "D-042", closed, officer="cb-lan")])
    token = s.link("D-042", counter=s.counter, source="sms")
    first = s.submit(token, 3)
    second = s.submit(token, 1, ("thai_do",))
    assert first.status_code == 200 and "Cảm ơn" in first.text
    assert second.status_code == 200 and "Phiếu này đã được đánh giá" in second.text
    again = s.http.get(f"/r/{token}")
    assert "Phiếu này đã được đánh giá" in again.text and 'name="score"' not in again.text
    eid = weblink.event_id(token)
    assert j.outcomes([eid]) == {eid: "rating"}
    s.wait_published()
    time.sleep(0.5)
    rows = j.ratings()
    assert [(r["score"], r["counter"], r["officer"], r["source"]) for r in rows] == [(3, s.counter, "cb-lan", "sms")]
    assert s.service.publisher.acked_count == 1
