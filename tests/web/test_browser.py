"""A citizen's phone: Debian's Chromium headless at 360x640 through the whole flow (open the link, pick a low score,
reasons, a comment, send, "Cảm ơn"), the rating stored credited to the QMS close's officer; the same with JavaScript
off; axe-core finds no WCAG 2.2 AA violation; screenshots of every page in tests/artifacts/screens/web (the ones in
docs/screens are refreshed, and looked at, with HAILONG_UPDATE_DOC_SCREENS=1 when the page changes)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from broker import weblink
from tests.web.browser import Touch, axe_violations, chromium, ensure_axe, full_page_png
from tests.web.conftest import WebStack

ROOT = Path(__file__).resolve().parents[2]
# a test run never rewrites the repository's docs (a clean checkout stays clean): screenshots go to the artifacts
# folder like the terminal's, unless a person refreshing the documented screens asks for docs/screens
SCREENS = (ROOT / "docs" / "screens" if os.environ.get("HAILONG_UPDATE_DOC_SCREENS") == "1"
           else ROOT / "tests" / "artifacts" / "screens" / "web")
SCREENS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def axe_source() -> str:
    return ensure_axe()


@pytest.fixture
def browser() -> Iterator[object]:
    driver = chromium()
    yield driver
    driver.quit()


def _close(s: WebStack, number: str, officer: str, counter: str = "q2") -> int:
    closed = time.time_ns() // 1_000_000 - 30_000
    s.judged.send([s.judged.close(s.centre, counter, number, closed, officer=officer, service="ho-tich")])
    return closed


def _heading(driver: object, expected: str) -> str:
    """Wait until the page's h1 reads ``expected`` (a submit navigates: the old page goes stale meanwhile)."""
    def read(d: object) -> str | bool:
        try:
            text = d.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
        except (StaleElementReferenceException, WebDriverException):  # the page is being replaced
            return False
        return text if text == expected else False

    return str(WebDriverWait(driver, 10).until(read))


def _rate_low(driver: object, comment: str) -> None:
    d = driver  # type: ignore[assignment]
    d.find_element(By.CSS_SELECTOR, "input[name=score][value='1'] + .tile").click()
    for code in ("thai_do", "thoi_gian_cho"):
        d.find_element(By.CSS_SELECTOR, f"input[name=reason][value='{code}'] + span").click()
    d.find_element(By.ID, "comment").send_keys(comment)
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_the_whole_flow_in_chromium_with_axe_and_screenshots(web_stack: WebStack, browser: object,
                                                               axe_source: str) -> None:
    s, d = web_stack, browser  # type: ignore[assignment]
    _close(s, "A-015", "cb-lan")
    token = s.link("A-015", counter="q2", source="qr")
    url = f"{s.http.base_url}/r/{token}"
    d.get(url)  # type: ignore[attr-defined]
    assert d.execute_script("return window.innerWidth") == 360  # type: ignore[attr-defined]
    assert "Quý khách có hài lòng" in d.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
    header = d.find_element(By.TAG_NAME, "header")  # type: ignore[attr-defined]
    assert header.value_of_css_property("background-color") in ("rgba(13, 71, 161, 1)", "rgb(13, 71, 161)"), \
        "the stylesheet was not applied (CSP)"
    assert axe_violations(d, axe_source) == []  # type: ignore[arg-type]
    d.save_screenshot(str(SCREENS / "web-rate-vi-first-screen.png"))  # type: ignore[attr-defined]
    full_page_png(d, SCREENS / "web-rate-vi.png")  # type: ignore[arg-type]
    d.get(url + "?lang=en")  # type: ignore[attr-defined]
    assert axe_violations(d, axe_source) == []  # type: ignore[arg-type]
    full_page_png(d, SCREENS / "web-rate-en.png")  # type: ignore[arg-type]
    d.get(url)  # type: ignore[attr-defined]
    _rate_low(d, "Chờ hơi lâu, cán bộ chưa giải thích rõ.")
    assert _heading(d, "Cảm ơn Quý khách!")
    assert "Không hài lòng" in d.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
    assert axe_violations(d, axe_source) == []  # type: ignore[arg-type]
    full_page_png(d, SCREENS / "web-thanks-vi.png")  # type: ignore[arg-type]
    eid = weblink.event_id(token)
    assert s.judged.outcomes([eid]) == {eid: "rating"}
    row = s.judged.ratings()[0]
    assert (row["officer"], row["counter"], row["score"], row["reasons"], row["input"]) == (
        "cb-lan", "q2", 1, "thai_do,thoi_gian_cho", "web")
    assert row["comment"] == "Chờ hơi lâu, cán bộ chưa giải thích rõ."
    d.get(url)  # type: ignore[attr-defined]
    assert _heading(d, "Phiếu này đã được đánh giá")
    full_page_png(d, SCREENS / "web-already-vi.png")  # type: ignore[arg-type]
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    d.get(f"{s.http.base_url}/r/{altered}")  # type: ignore[attr-defined]
    assert _heading(d, "Đường dẫn không hợp lệ")
    assert axe_violations(d, axe_source) == []  # type: ignore[arg-type]
    full_page_png(d, SCREENS / "web-invalid-vi.png")  # type: ignore[arg-type]
    expired = s.link("A-016", expires=int(time.time()) - 3600)
    d.get(f"{s.http.base_url}/r/{expired}")  # type: ignore[attr-defined]
    assert _heading(d, "Đường dẫn đã hết hạn")
    assert axe_violations(d, axe_source) == []  # type: ignore[arg-type]
    full_page_png(d, SCREENS / "web-expired-vi.png")  # type: ignore[arg-type]


def test_the_flow_works_with_javascript_disabled(web_stack: WebStack) -> None:
    s = web_stack
    _close(s, "B-020", "cb-minh", counter="q1")
    token = s.link("B-020", source="sms")
    d = chromium(javascript=False)
    try:
        d.get(f"{s.http.base_url}/r/{token}")
        assert "Phiếu số" in d.page_source
        touch = Touch(d)
        touch.tap("input[name=score][value='1'] + .tile")
        touch.tap("input[name=reason][value='co_so_vat_chat'] + span")
        touch.type("#comment", "Không có chỗ ngồi")
        touch.tap("button[type=submit]")
        assert _heading(d, "Cảm ơn Quý khách!")
    finally:
        d.quit()
    eid = weblink.event_id(token)
    assert s.judged.outcomes([eid]) == {eid: "rating"}
    row = s.judged.ratings()[0]
    assert (row["officer"], row["counter"], row["score"], row["source"], row["reasons"], row["comment"]) == (
        "cb-minh", "q1", 1, "sms", "co_so_vat_chat", "Không có chỗ ngồi")
