"""The HTTP side: ``GET/POST /r/<token>`` and ``/healthz`` (Starlette; served by uvicorn).

Every page is plain HTML with an inlined, hash-allowed stylesheet and no script; every response
carries a strict Content-Security-Policy, ``Referrer-Policy: no-referrer`` (the token is in the
URL: no other site may learn it) and ``Cache-Control: no-store``. No redirect exists, so none can
be an open one. Requests are bounded (``http.max_body_bytes``, read in chunks), limited per
client address and per link, and the token is never logged (only its fingerprint).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from broker import ratingscale, weblink

from .config import WebConfig
from .limits import Buckets
from .pages import CSP, day_text, levels, reasons, render, texts
from .ratings import Checked, LinkRefused, RatingDesk, expiry_text

log = logging.getLogger("hailong.web")
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


class WebApp:
    def __init__(self, cfg: WebConfig, desk: RatingDesk, health: Callable[[], dict[str, Any]]) -> None:
        self.cfg = cfg
        self.desk = desk
        self.health = health
        lim = cfg.limits
        self.per_ip = Buckets(lim.per_ip_per_min, 60.0, lim.tracked)
        self.per_link = Buckets(lim.posts_per_link, float(lim.link_window_s), lim.tracked)
        self.app = Starlette(routes=[Route("/r/{token}", self.rate, methods=["GET", "POST"]),
                                     Route("/healthz", self.healthz, methods=["GET"])],
                             exception_handlers={HTTPException: self._http_error})

    # ------------------------------------------------------------------ helpers
    def _lang(self, value: str | None) -> str:
        return value if value in ("vi", "en") else self.cfg.language

    def _message(self, lang: str, kind: str, lines: list[str], status: int, token: str | None = None,
                 title: str | None = None) -> HTMLResponse:
        t = texts(lang)
        other = "en" if lang == "vi" else "vi"
        switch = f"/r/{token}?lang={other}" if token else None
        return _html(render("message.html.j2", lang, kind=kind, title=title or t[f"{kind}_title"], lines=lines,
                            switch_href=switch), status)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        lang = self._lang(request.query_params.get("lang"))
        return self._message(lang, "not_found", [], status if status in (404, 405) else 404)

    def _form_page(self, checked: Checked, lang: str, *, error: str | None = None, chosen: int | None = None,
                   checked_reasons: set[str] | None = None, comment: str = "", status: int = 200) -> HTMLResponse:
        t = texts(lang)
        link, sc = checked.link, checked.scale
        other = "en" if lang == "vi" else "vi"
        at_most = sc.ask_reasons_at_most
        top_reason_label = ratingscale.levels(lang, sc.scale)[sc.scale - at_most] if at_most >= 1 else ""
        return _html(render(
            "rate.html.j2", lang, title=f"{t['ticket']} {link.ticket}", centre_name=checked.centre_name,
            counter_label=checked.counter_label, ticket=link.ticket, day=day_text(link.day),
            action=f"/r/{checked.token}", levels=levels(lang, sc.scale), chosen=chosen,
            reasons=reasons(lang, sc.reasons, checked_reasons or set()) if at_most >= 1 else [],
            reasons_hint=t["reasons_hint"].format(label=top_reason_label.replace("\u00a0", " ")),
            comment_max=self.cfg.comment_max_chars, comment=comment,
            comment_label=t["comment_label"].format(n=self.cfg.comment_max_chars), error=error,
            switch_href=f"/r/{checked.token}?lang={other}"), status)

    # ------------------------------------------------------------------ routes
    async def healthz(self, request: Request) -> Response:
        report = self.health()
        return JSONResponse(report, status_code=200 if report.get("ok") else 503, headers=HEADERS)

    async def rate(self, request: Request) -> Response:
        token = request.path_params["token"]
        client = request.client.host if request.client else "-"
        lang = self._lang(request.query_params.get("lang"))
        if not self.per_ip.allow(client):
            return self._message(lang, "too_many", [texts(lang)["too_many_body"]], 429)
        body: bytes | None = None
        if request.method == "POST":
            body = await self._read_body(request)
            if body is None:
                return self._message(lang, "too_large", [texts(lang)["too_large_body"]], 413)
        form = _parse_form(body) if body is not None else None
        if form is not None:
            lang = self._lang(form.get("lang", [None])[0])
        try:
            checked = self.desk.check(token)
        except LinkRefused as exc:
            return self._refused(exc, lang, token)
        if request.method == "GET":
            if await run_in_threadpool(self.desk.already_rated, checked):
                return self._message(lang, "already", [texts(lang)["already_body"]], 200, token)
            return self._form_page(checked, lang)
        return await self._submit(checked, lang, form)

    def _refused(self, exc: LinkRefused, lang: str, token: str) -> HTMLResponse:
        t = texts(lang)
        if exc.reason == "expired" and exc.expires is not None:
            centre = weblink.decode(token).link.centre
            tz = self.desk.registry.centres[centre].timezone
            return self._message(lang, "expired", [t["expired_body"].format(when=expiry_text(exc.expires, tz))], 410)
        log.info("link refused (%s): %s", exc.reason, weblink.fingerprint(token))
        return self._message(lang, "invalid", [t["invalid_body"]], 404)

    async def _read_body(self, request: Request) -> bytes | None:
        limit = self.cfg.http.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _submit(self, checked: Checked, lang: str, form: dict[str, list[str]] | None) -> Response:
        t = texts(lang)
        sc = checked.scale
        if not self.per_link.allow(checked.event_id):
            return self._message(lang, "too_many", [t["too_many_body"]], 429, checked.token)
        if form is None:
            return self._form_page(checked, lang, error=t["error_form"], status=400)
        comment = _CONTROL.sub("", (form.get("comment") or [""])[0]).strip()
        chosen_reasons = [r for r in form.get("reason", []) if r in sc.reasons]
        scores = form.get("score", [])
        score = int(scores[0]) if len(scores) == 1 and scores[0].isdigit() and len(scores[0]) == 1 else 0
        if not 1 <= score <= sc.scale:
            return self._form_page(checked, lang, error=t["error_score"], checked_reasons=set(chosen_reasons),
                                   comment=comment[: self.cfg.comment_max_chars], status=400)
        if len(comment) > self.cfg.comment_max_chars:
            return self._message(lang, "too_large", [t["too_large_body"]], 413, checked.token)
        kept = tuple(dict.fromkeys(chosen_reasons)) if score <= sc.ask_reasons_at_most else ()
        try:
            new = await self.desk.submit_async(checked, score, kept, comment or None)
        except Exception:  # SQLite full or failing: say so, nothing was promised
            log.exception("outbox commit failed for link %s", weblink.fingerprint(checked.token))
            return self._message(lang, "unavailable", [t["unavailable_body"]], 503, checked.token)
        if not new:
            return self._message(lang, "already", [t["already_body"]], 200, checked.token)
        label = ratingscale.levels(lang, sc.scale)[sc.scale - score].replace("\u00a0", " ")
        return self._message(lang, "thanks", [t["thanks_body"].format(ticket=checked.link.ticket),
                                              t["thanks_chosen"].format(label=label)], 200)


def _parse_form(body: bytes) -> dict[str, list[str]] | None:
    """An application/x-www-form-urlencoded body; None if it is not one (bad UTF-8, too many fields)."""
    try:
        return urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=False, max_num_fields=32,
                                     errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
