"""The page itself over real HTTP (uvicorn): size, headers, language switch, form validation, limits, request size,
no redirect, and no token in any log line."""

from __future__ import annotations

import base64
import hashlib
import logging
import re

import pytest

from broker import weblink
from tests.web.conftest import WebStack


def test_the_form_is_small_self_contained_and_strict(web_stack: WebStack) -> None:
    s = web_stack
    token = s.link("E-5", counter=s.counter)
    page = s.http.get(f"/r/{token}")
    assert page.status_code == 200 and len(page.content) <= 50_000
    html = page.text
    for text in ("Nơi phục vụ", "Trung tâm Phục vụ hành chính công", "Quầy q1", "E-5", "Phiếu số",
                 "Rất hài\u00a0lòng", "Bình\u00a0thường", "Không hài\u00a0lòng", "Thái độ cán bộ",
                 "Xin đừng ghi họ tên"):
        assert text in html, text
    assert html.count('type="radio"') == 4 and html.count("<svg") == 4  # the centre's 4-level scale, one face each
    assert " style=" not in html, "no style attribute: the CSP allows only the hashed stylesheet"
    assert "<script" not in html and " on" + "click=" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no third-party asset"
    csp = page.headers["content-security-policy"]
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style, "the stylesheet is inlined"
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in csp, "the inlined stylesheet is exactly the one the CSP allows (else unstyled)"
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY" and "server" not in page.headers
    en = s.http.get(f"/r/{token}", params={"lang": "en"})
    assert "Very satisfied" in en.text and "Officer&#39;s attitude" in en.text and 'lang="en"' in en.text


def test_a_missing_score_keeps_what_was_chosen_and_explains(web_stack: WebStack) -> None:
    s = web_stack
    token = s.link("E-6")
    reply = s.http.post(f"/r/{token}", content="lang=vi&reason=thai_do&comment=ch%E1%BA%ADm",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 400 and "Vui lòng chọn một mức độ hài lòng." in reply.text
    assert 'value="thai_do" checked' in reply.text and ">chậm</textarea>" in reply.text
    tokens = [token]
    for i, bad in enumerate(("score=9", "score=0", "score=-1", "score=4%00", "score=%FF", "score=4&score=%FF")):
        tokens.append(s.link(f"E-6{i}"))  # one link each: the per-link limit is not what this tests
        assert s.http.post(f"/r/{tokens[-1]}", content=bad,
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 400, bad
    assert s.service.outbox.depth() == 0
    assert not any(s.service.outbox.seen(weblink.event_id(t)) for t in tokens)


def test_bodies_over_the_limit_are_refused_unread(web_stack: WebStack) -> None:
    s = web_stack
    token = s.link("E-7")
    big = "score=4&comment=" + "x" * 5000
    reply = s.http.post(f"/r/{token}", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 413 and "Nội dung quá dài" in reply.text

    def chunks():  # no Content-Length: streamed, cut at the limit
        for _ in range(10):
            yield b"comment=" + b"y" * 1000

    reply = s.http.post(f"/r/{token}", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 413
    too_long = s.submit(token, 2, comment="z" * 281)
    assert too_long.status_code == 413
    assert s.service.outbox.depth() == 0


def test_per_link_and_per_address_limits(web_stack: WebStack) -> None:
    s = web_stack
    token = s.link("E-8")
    codes = [s.http.post(f"/r/{token}", content="score=",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code for _ in range(7)]
    assert codes[:5] == [400] * 5 and codes[5:] == [429, 429]
    other = s.link("E-9")
    assert s.submit(other, 4).status_code == 200  # another link is not limited by the first
    # the address's bucket: 60 a minute, refilled at 1/s; a fast burst runs it dry whatever the machine's speed
    replies = [s.http.get(f"/r/{other}") for _ in range(80)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited and "Quá nhiều yêu cầu" in limited[0].text
    assert {r.status_code for r in replies} == {200, 429}


def test_buckets_refill_at_their_rate_and_forget_the_oldest() -> None:
    from web.limits import Buckets

    b = Buckets(capacity=3, period_s=3.0, tracked=2)
    assert [b.allow("ip-a", now=100.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow("ip-a", now=100.5) is False and b.allow("ip-a", now=101.6) is True  # 1 token per second
    b.allow("ip-b", now=102.0)
    b.allow("ip-c", now=102.0)  # tracked=2: ip-a, the least recently seen, is forgotten (a full bucket again)
    assert [b.allow("ip-a", now=102.0) for _ in range(4)] == [True, True, True, False]


def test_no_redirects_unknown_paths_and_methods(web_stack: WebStack) -> None:
    s = web_stack
    token = s.link("E-10")
    for path in ("/", "/r/", "/r/x/y", "/r/" + token + "/next", "/r/" + token + "%2F..%2Fhealthz"):
        reply = s.http.get(path)
        assert reply.status_code in (404, 405) and "location" not in reply.headers, path
    assert s.http.put(f"/r/{token}").status_code == 405
    health = s.http.get("/healthz").json()
    assert health == {"ok": True, "mqtt_connected": True, "outbox_depth": 0}


def test_tokens_never_reach_the_logs(web_stack: WebStack, caplog: pytest.LogCaptureFixture) -> None:
    s = web_stack
    caplog.set_level(logging.DEBUG)
    token = s.link("E-11")
    forged = weblink.sign(weblink.decode(token).link, 1, b"\x01" * 32)
    s.http.get(f"/r/{forged}")
    s.submit(token, 1, ("thai_do",))
    s.wait_published()
    # the service's loggers (and the server's); the test's own HTTP client logs the URLs it calls
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("hailong", "uvicorn", "starlette")))
    assert weblink.fingerprint(forged) in text and weblink.fingerprint(token) in text
    assert token not in text and forged not in text


def test_a_failing_outbox_answers_503_and_promises_nothing(web_stack: WebStack) -> None:
    """SQLite refusing the commit (a real error raised inside the outbox's transaction): no 'Cảm ơn', nothing
    queued or remembered, and the same link works once the outbox does (the commit is awaited on the event loop)."""
    import sqlite3

    s = web_stack
    token = s.link("E-503")
    db = sqlite3.connect(str(s.service.cfg.outbox), isolation_level=None)
    db.execute("CREATE TRIGGER fail_queue BEFORE INSERT ON pending BEGIN SELECT RAISE(FAIL, 'disk full'); END")
    try:
        reply = s.submit(token, 2)
        assert reply.status_code == 503 and "Cảm ơn" not in reply.text
        assert s.service.outbox.depth() == 0 and not s.service.outbox.seen(weblink.event_id(token))
    finally:
        db.execute("DROP TRIGGER fail_queue")
        db.close()
    again = s.submit(token, 2)
    assert again.status_code == 200 and "Cảm ơn" in again.text
    assert s.service.outbox.seen(weblink.event_id(token))
