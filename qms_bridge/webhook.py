"""The bridge's HTTP server: the vendor's callback (POST) and ``/healthz`` (GET).

The vendor's software calls ``POST {webhook.path}`` on each event with a JSON body
and a shared secret or an HMAC-SHA256 signature of the body in a header. The answer
is 200 only once every event of the body is durably in the outbox (committed with
synchronous=FULL), so a vendor that retries on anything else never loses an event,
and a retry of one already queued is answered 200 again without a second event.
Anything wrong with a request gets a 4xx whose JSON names the problem, and nothing is
queued; the vendor must not retry it unchanged (docs/qms-integration.md says so)::

    401 bad_secret / bad_signature     415 not_json (Content-Type)
    413 body_too_large                 400 malformed_json (not UTF-8, not JSON, NaN/Infinity,
    411 length_required                    a number out of range, nested too deeply)
    422 unknown_counter, missing_ticket, unknown_type, bad_time, unmappable, ... (the mapping's reason)

Only the bridge's own trouble is 5xx: 503 not_queued (the outbox could not be written:
retry later), 500 internal_error (a bug of ours: retrying the same body will not help).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .config import WebhookSettings
from .mapping import Mapped, Mapper, MappingError, NotServed
from .outbox import Queued

log = logging.getLogger("hailong.qms.webhook")
# a vendor event is an object a few levels deep; a list of them one more
MAX_JSON_DEPTH = 32


class HttpProblem(Exception):
    def __init__(self, status: HTTPStatus, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


def check_auth(settings: WebhookSettings, secret: str, headers: Any, body: bytes) -> None:
    """Raise HttpProblem(401) unless the request carries the vendor's secret or a valid signature."""
    given = headers.get(settings.header_name)
    if not given:
        raise HttpProblem(HTTPStatus.UNAUTHORIZED, "missing_" + ("secret" if settings.auth == "shared_secret"
                                                                  else "signature"),
                          f"header {settings.header_name} is missing")
    if settings.auth == "shared_secret":
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise HttpProblem(HTTPStatus.UNAUTHORIZED, "bad_secret", f"header {settings.header_name} is wrong")
        return
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    got = given.strip().removeprefix("sha256=").lower()
    if not hmac.compare_digest(got.encode(), want.encode()):
        raise HttpProblem(HTTPStatus.UNAUTHORIZED, "bad_signature",
                          f"header {settings.header_name} is not the HMAC-SHA256 (hex) of the body")


class BridgeHttpServer(ThreadingHTTPServer):
    """Routes: GET /healthz, POST <webhook path> when the webhook is enabled."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, webhook: WebhookSettings, secret: str | None, mapper: Mapper,
                 accept: Callable[[list[Mapped]], Queued], health: Callable[[], tuple[int, dict[str, Any]]],
                 on_rejected: Callable[[], None]) -> None:
        self.webhook = webhook
        self.secret = secret
        self.mapper = mapper
        self.accept = accept
        self.health = health
        self.on_rejected = on_rejected
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: BridgeHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            status, body = self.server.health()
            self._send(status, body)
            return
        self._send(HTTPStatus.NOT_FOUND, {"error": "not_found", "detail": f"no route {self.path}"})

    def do_POST(self) -> None:
        srv = self.server
        if not srv.webhook.enabled or self.path.split("?")[0] != srv.webhook.path:
            self._drain()
            self._send(HTTPStatus.NOT_FOUND, {"error": "not_found", "detail": f"no route {self.path}"})
            return
        try:
            events = self._events()
        except HttpProblem as exc:
            srv.on_rejected()
            log.warning("webhook rejected (%s): %s", exc.reason, exc.detail)
            self._send(exc.status, {"error": exc.reason, "detail": exc.detail})
            return
        except Exception as exc:  # a bug of ours: not the vendor's to retry, and not "busy" either
            log.exception("webhook body could not be handled")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal_error", "detail": repr(exc)[:300]})
            return
        try:
            queued = srv.accept([m for m in events if isinstance(m, Mapped)])
        except Exception as exc:  # outbox unwritable (disk full...): not queued, the vendor must retry
            log.exception("webhook event could not be queued")
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not_queued", "detail": repr(exc)[:300]})
            return
        answer: dict[str, Any] = {"queued": list(queued.new), "duplicates": list(queued.duplicates)}
        not_served = [n for n in events if isinstance(n, NotServed)]
        if not_served:  # cancelled/transferred closes: understood, deliberately not events (maps.statuses)
            answer["not_served"] = [n.describe() for n in not_served]
        self._send(HTTPStatus.OK, answer)

    def _drain(self) -> None:
        length = self._length()
        if 0 < length <= self.server.webhook.max_body_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _length(self) -> int:
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return -1

    def _events(self) -> list[Mapped | NotServed]:
        srv = self.server
        limit = srv.webhook.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise HttpProblem(HTTPStatus.LENGTH_REQUIRED, "length_required", "send Content-Length, not chunked")
        length = self._length()
        if length < 0:
            self.close_connection = True
            raise HttpProblem(HTTPStatus.BAD_REQUEST, "bad_length", "Content-Length is not a number")
        if length > limit:
            # do not read it: answer and close, the vendor learns the limit from the message
            self.close_connection = True
            raise HttpProblem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body_too_large",
                              f"{length} bytes > limit {limit}")
        body = self.rfile.read(length)
        assert srv.secret is not None
        check_auth(srv.webhook, srv.secret, self.headers, body)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpProblem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "not_json",
                              f"Content-Type must be application/json, got {ctype or 'none'!r}")
        doc = decode_json(body)
        try:
            return srv.mapper.from_webhook(doc)
        except MappingError as exc:
            raise HttpProblem(HTTPStatus.UNPROCESSABLE_ENTITY, exc.reason, str(exc)) from None
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            # a value of a shape no mapping rule expected: the body's fault, named, never a 5xx
            raise HttpProblem(HTTPStatus.UNPROCESSABLE_ENTITY, "unmappable",
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def decode_json(body: bytes) -> Any:
    """The body as strict JSON (RFC 8259): UTF-8, no NaN/Infinity, finite numbers, bounded nesting.
    Every way a body can fail is a 400 malformed_json naming it (Python's own parser would raise
    RecursionError on deep nesting, accept Infinity, and raise ValueError on a 5,000-digit integer)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpProblem(HTTPStatus.BAD_REQUEST, "malformed_json", f"body is not UTF-8: {exc.reason}") from None
    depth = _max_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise HttpProblem(HTTPStatus.BAD_REQUEST, "malformed_json",
                          f"body is nested {depth} levels deep (limit {MAX_JSON_DEPTH})")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise HttpProblem(HTTPStatus.BAD_REQUEST, "malformed_json",
                          f"body is not JSON: {exc.msg} at char {exc.pos}") from None
    except (ValueError, RecursionError) as exc:
        raise HttpProblem(HTTPStatus.BAD_REQUEST, "malformed_json", f"body is not JSON: {exc}"[:300]) from None


def _max_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (unbalanced text counts what it opened): checked
    before parsing, so a deep body is refused without recursing into it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
