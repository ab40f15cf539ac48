"""The web rating service process: registry + keys -> page -> outbox -> publisher (svc.web)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from broker.fleet.registry import RegistryError, load_registry
from broker.kernel.settings import ConfigError
from broker.mqtt.outbox import Outbox
from broker.mqtt.outbox_publisher import OutboxPublisher

from .app import WebApp
from .config import WebConfig
from .ratings import RatingDesk

log = logging.getLogger("hailong.web")


class WebService:
    def __init__(self, cfg: WebConfig) -> None:
        self.cfg = cfg
        try:
            self.registry = load_registry(cfg.fleet)
        except RegistryError as exc:
            raise ConfigError(cfg.fleet, "fleet", str(exc)) from None
        if not cfg.keys_path.is_dir():
            raise ConfigError(cfg.keys_path, "keys_dir", "no such directory: make a centre's first link with "
                              "`hailong web link` (it creates the key) or point keys_dir at <fleet>/state/weblink")
        self.outbox = Outbox(cfg.outbox, cfg.seen_days)
        user = cfg.mqtt_user
        self.publisher = OutboxPublisher(user, user.username or "svc.web", self.outbox, name="web-publisher",
                                         log=logging.getLogger("hailong.web.publisher"))
        self.desk = RatingDesk(cfg, self.registry, self.outbox)
        self.web = WebApp(cfg, self.desk, self.health)
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = cfg.http.port

    def health(self) -> dict[str, Any]:
        depth = self.outbox.depth()
        return {"ok": self.publisher.connected.is_set(), "mqtt_connected": self.publisher.connected.is_set(),
                "outbox_depth": depth}

    def _uvicorn(self) -> uvicorn.Server:
        h = self.cfg.http
        # no access log: it would write every token (a bearer credential) in clear; headers bounded to 16 KiB
        config = uvicorn.Config(self.web.app, host=h.host, port=self.port, access_log=False, proxy_headers=True,
                                forwarded_allow_ips=h.forwarded_allow_ips, server_header=False, log_level="warning",
                                lifespan="off", limit_concurrency=1000, timeout_keep_alive=5,
                                h11_max_incomplete_event_size=16384)
        return uvicorn.Server(config)

    def start(self) -> WebService:
        """Publisher and HTTP server on threads (tests, bench); ``run`` is the blocking command."""
        self.publisher.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.cfg.http.host, self.cfg.http.port))
        self.port = sock.getsockname()[1]
        self.server = self._uvicorn()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="web-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("web rating service on %s:%d, outbox %s (%d pending)", self.cfg.http.host, self.port,
                 self.cfg.outbox, self.outbox.depth())
        return self

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (uvicorn handles them), then drain and stop the publisher."""
        self.publisher.start()
        self.server = self._uvicorn()
        log.info("web rating service on %s:%d, outbox %s (%d pending)", self.cfg.http.host, self.port,
                 self.cfg.outbox, self.outbox.depth())
        try:
            self.server.run()
        finally:
            self.desk.committer.stop()
            self.publisher.stop()
            self.outbox.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.desk.committer.stop()
        self.publisher.stop()
        self.outbox.close()
