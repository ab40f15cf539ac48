"""The bridge process: adapters -> outbox -> publisher, plus /healthz and the retained status."""

from __future__ import annotations

import logging
import threading
from typing import Any

from broker.mqtt.outbox import Pending

from .config import BridgeConfig
from .health import BridgeHealth
from .mapping import Mapped, Mapper
from .outbox import RETRY_REQUEST, Outbox, Queued
from .publisher import Publisher
from .webhook import BridgeHttpServer

log = logging.getLogger("hailong.qms")


class Bridge:
    def __init__(self, cfg: BridgeConfig) -> None:
        self.cfg = cfg
        self.mapper = Mapper(cfg)
        self.outbox = Outbox(cfg.outbox, cfg.seen_days)
        self.health = BridgeHealth(cfg.centre, cfg.quiet_after_s)
        self.publisher = Publisher(cfg, self.outbox, self._status_fields, on_acked=self._acked)
        secret = cfg.webhook.secret_value() if cfg.webhook.enabled else None
        self.http = BridgeHttpServer(
            (cfg.http.host, cfg.http.port), webhook=cfg.webhook, secret=secret, mapper=self.mapper,
            accept=self.accept, health=self.report, on_rejected=self._webhook_rejected)
        self.poller = None
        if cfg.sql.enabled:
            from .sql import SqlPoller  # SQLAlchemy only when a database is polled

            self.poller = SqlPoller(cfg, self.mapper, self.outbox, self._queued, self.health.sql_polled,
                                    on_held=self.health.rows_held)
            self.health.rows_held(self.outbox.held())
        self._http_thread = threading.Thread(target=self.http.serve_forever, name="qms-http", daemon=True)
        self._last_state = ""

    # ------------------------------------------------------------------ adapters -> outbox
    def accept(self, events: list[Mapped]) -> Queued:
        """The webhook's path: durable before the vendor hears 200."""
        queued = self.outbox.enqueue(events)
        self.health.webhook_accepted += 1
        self._queued(events, queued)
        return queued

    def _queued(self, events: list[Mapped], queued: Queued) -> None:
        new = set(queued.new)
        self.health.queued([m.event for m in events if m.event_id in new])
        if new:
            self.publisher.wake()
        self._maybe_status()

    def _acked(self, item: Pending) -> None:
        self.health.acked(item.counter)

    def _webhook_rejected(self) -> None:
        self.health.webhook_rejected += 1

    # ------------------------------------------------------------------ health
    def _state(self) -> str:
        return self.health.state(mqtt_connected=self.publisher.connected.is_set(), outbox_depth=self.outbox.depth(),
                                 sql_enabled=self.cfg.sql.enabled, poll_interval_s=self.cfg.sql.poll_interval_s)

    def _status_fields(self) -> dict[str, Any]:
        self._last_state = self._state()
        return {"outbox_depth": self.outbox.depth(), "state": self._last_state}

    def _maybe_status(self) -> None:
        # a change of state is published at once, not at the next periodic refresh
        if self._state() != self._last_state:
            self.publisher.publish_status()

    def report(self) -> tuple[int, dict[str, Any]]:
        self._maybe_status()
        return self.health.report(mqtt_connected=self.publisher.connected.is_set(),
                                  outbox_depth=self.outbox.depth(), sql_enabled=self.cfg.sql.enabled,
                                  poll_interval_s=self.cfg.sql.poll_interval_s)

    def reload_maps(self, cfg: BridgeConfig) -> None:
        """SIGHUP: take the [maps] of a re-read qms.toml (an officer code added, a status listed) and
        retry the held rows with them at the next poll. Anything else needs a restart: said, not applied."""
        if cfg.model_dump(exclude={"maps"}) != self.cfg.model_dump(exclude={"maps"}):
            log.warning("reload: only [maps] is applied while running; restart the bridge for the other changes")
        self.cfg = self.cfg.model_copy(update={"maps": cfg.maps})
        self.mapper = Mapper(self.cfg)
        self.http.mapper = self.mapper
        if self.poller is not None:
            self.poller.mapper = self.mapper
            self.outbox.request(RETRY_REQUEST)
        log.info("reload: [maps] applied (%d held row(s) retried at the next poll)", len(self.outbox.held()))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Bridge:
        self.publisher.start()
        self._http_thread.start()
        if self.poller is not None:
            self.poller.start()
        log.info("QMS bridge for %s: http %s:%d, webhook %s, sql %s, outbox %s (%d pending)",
                 self.cfg.centre, self.cfg.http.host, self.http.port, self.cfg.webhook.enabled,
                 self.cfg.sql.enabled, self.cfg.outbox, self.outbox.depth())
        return self

    def stop(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        self.http.shutdown()
        self.http.server_close()
        self.publisher.stop()
        self.outbox.close()
