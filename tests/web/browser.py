"""Debian's Chromium, headless, driven by selenium through Debian's chromedriver (no browser download), and
axe-core (npm, pinned in axe_js/) injected into the page for WCAG 2.2 AA."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_DIR = Path(__file__).with_name("axe_js")
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--lang=vi-VN", "--hide-scrollbars"]


def ensure_axe() -> str:
    """``npm ci`` in axe_js/ when node_modules is missing or older than the lock file; the script's text."""
    lock = AXE_DIR / "package-lock.json"
    installed = AXE_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found: install Debian's nodejs and npm (scripts/install-system-deps.sh test)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AXE_DIR, check=True)
    return AXE_JS.read_text(encoding="utf-8")


def chromium(*, javascript: bool = True, width: int = 360, height: int = 640) -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            raise RuntimeError(f"{path} missing: apt-get install chromium chromium-driver "
                               "(scripts/install-system-deps.sh test)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={max(width, 500)},{height + 200}")  # headless windows are >= 500 wide
    # a phone's viewport (CSS pixels, at a phone's pixel ratio): what the page lays out for
    opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height,
                                                                        "pixelRatio": 2.0}})
    if not javascript:  # the browser's own "JavaScript: blocked" setting, as a citizen may have it
        opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(20)
    return driver


def axe_violations(driver: webdriver.Chrome, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's violations of WCAG 2.0/2.1/2.2 A and AA on the current page (injected through WebDriver, which the
    page's CSP does not govern)."""
    driver.execute_script(axe_source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify({violations: r.violations, passes: r.passes.length})))"
        ".catch(e => done(JSON.stringify({error: String(e)})));", WCAG_22_AA)
    data = json.loads(result)
    assert "error" not in data, data
    assert data["passes"] >= 5, "axe ran almost no rule: it did not see the page"
    return list(data["violations"])


def full_page_png(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page at the phone's width (what scrolling shows), for docs/screens."""
    import base64

    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


class Touch:
    """Taps and typing through DevTools input events, as a finger and a keyboard do: WebDriver's own click runs
    JavaScript helpers in the page, which a browser with JavaScript blocked does not run."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.d = driver

    def _centre(self, selector: str) -> tuple[float, float]:
        doc = self.d.execute_cdp_cmd("DOM.getDocument", {"depth": 0})
        node = self.d.execute_cdp_cmd("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})
        assert node["nodeId"], f"no element {selector}"
        self.d.execute_cdp_cmd("DOM.scrollIntoViewIfNeeded", {"nodeId": node["nodeId"]})
        quad = self.d.execute_cdp_cmd("DOM.getContentQuads", {"nodeId": node["nodeId"]})["quads"][0]
        return (quad[0] + quad[4]) / 2, (quad[1] + quad[5]) / 2

    def tap(self, selector: str) -> None:
        x, y = self._centre(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.d.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                                "clickCount": 1})

    def type(self, selector: str, text: str) -> None:
        self.tap(selector)
        self.d.execute_cdp_cmd("Input.insertText", {"text": text})
