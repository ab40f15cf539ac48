"""Test-only translation proxy: InfluxDB 2.x write API in front of InfluxDB 1.6.7.

InfluxDB 1.8 serves /api/v2/write natively; Debian ships 1.6.7, which does not.
This proxy does what 1.8 does (bucket -> db, v2 precision names -> v1, the v2
error body shape) so influxdb-client's real v2 writer can be tested against the
real 1.6.7 server. Everything else is passed through unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


class _Handler(BaseHTTPRequestHandler):
    upstream: str = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
        req = urllib.request.Request(self.upstream + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                self._reply(r.status, r.read(), r.headers.get("Content-Type", "application/json"))
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                msg = json.loads(raw).get("error", raw.decode())
            except ValueError:
                msg = raw.decode(errors="replace")
            code = "invalid" if exc.code == 400 else "internal error"
            self._reply(exc.code, json.dumps({"code": code, "message": msg}).encode())
        except (urllib.error.URLError, OSError) as exc:
            self._reply(503, json.dumps({"code": "unavailable", "message": str(exc)}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        url = urllib.parse.urlparse(self.path)
        if url.path == "/api/v2/write":
            q = urllib.parse.parse_qs(url.query)
            bucket = q.get("bucket", [""])[0]
            db, _, rp = bucket.partition("/")
            params = {"db": db, "precision": PRECISION.get(q.get("precision", ["ns"])[0], "n")}
            if rp:
                params["rp"] = rp
            headers = {"Content-Type": "text/plain"}
            if self.headers.get("Content-Encoding"):
                headers["Content-Encoding"] = self.headers["Content-Encoding"]
            self._forward("POST", "/write?" + urllib.parse.urlencode(params), body, headers)
        else:
            self._forward("POST", self.path, body, {"Content-Type": self.headers.get("Content-Type", "")})

    def do_GET(self) -> None:
        self._forward("GET", self.path, None, {})


class V2Proxy:
    def __init__(self, upstream: str) -> None:
        handler = type("Handler", (_Handler,), {"upstream": upstream.rstrip("/")})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> V2Proxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
