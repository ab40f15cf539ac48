"""A loopback ``GET /healthz`` for the services (ingest, national consumer).

200 when ``snapshot()["alive"]`` is true, else 503; the snapshot is the JSON body, so
whether the broker and InfluxDB are reachable is reported for humans and monitoring.
Bound to 127.0.0.1 only. What "alive" means is each service's call (ingest/service.py, ingest/workers.py: health()).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("hailong.health")


class HealthServer:
    """GET /healthz on 127.0.0.1 only: 200 when ``snapshot()["alive"]``, else 503; JSON body."""

    def __init__(self, port: int, snapshot: Callable[[], dict[str, Any]], name: str = "ingest") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/healthz":
                    self.send_error(404)
                    return
                body = outer.snapshot()
                data = json.dumps(body).encode()
                self.send_response(200 if body.get("alive") else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.snapshot = snapshot
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{name}-healthz", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("healthz on http://127.0.0.1:%d/healthz", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
