"""Sessions of workers the instance no longer runs: found, drained, ended.

Each worker k of an instance has its own broker identity (``<user>.w<k>``) and a persistent
session that keeps queueing its centres' ratings and QMS events while it is away (for up to
``persistent_client_expiration``, 30 days in the rendered broker). When ``workers`` goes
down (say 3 -> 2, a smaller machine, ``workers = "auto"`` under a tighter cgroup) worker 2
never comes back: whatever its session held at the switch, and what it went on collecting,
would wait there for a month, already PUBACKed to the terminals.

So at every start the supervisor asks the broker about identities k >= workers, in order,
until one has no session or is not a broker user (ingest/workers.py runs this in the
background, the workers start at once). Each one that has a session is run once more as a
*drainer*: an ordinary worker that owns no centres (``integrity.partition.drain``), which
unsubscribes every filter on connect (so nothing new queues), stores what its session
delivers like any worker, and exits once idle; the supervisor then ends the session
(clean start, no expiry: :func:`broker.mqtt.handshake.end_session`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from broker.identities import worker_user
from broker.mqtt import wire
from broker.mqtt.handshake import end_session, has_session
from broker.mqtt.settings import MqttSettings

from .config import IngestConfig

log = logging.getLogger("hailong.ingest.workers")

MAX_WORKER_INDEX = 64  # IngestConfig.workers is at most 64


class RetiredSessions:
    """Finds the sessions of worker identities >= ``count`` in a background thread (broker down: retries)."""

    def __init__(self, cfg: IngestConfig, count: int,
                 password_file: Callable[[IngestConfig, int], Path | None]) -> None:
        self.cfg = cfg
        self.count = count
        self._password_file = password_file
        self._found: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retired-sessions", daemon=True)
        self.scanned = threading.Event()  # the scan finished (tests and the log read it)

    def settings(self, index: int) -> MqttSettings:
        """How worker identity ``index`` logs in (its user, its own secret when the instance has them)."""
        m = self.cfg.mqtt
        if not m.username:
            return m
        update: dict[str, object] = {"username": worker_user(m.username, index)}
        secret = self._password_file(self.cfg, index)
        if secret is not None:
            update |= {"password": None, "password_file": secret}
        return m.model_copy(update=update)

    def client_id(self, index: int) -> str:
        return worker_user(self.cfg.client_id, index)

    def start(self) -> None:
        if self.cfg.registry is not None and self.cfg.mqtt.username:  # no worker identities otherwise
            self._thread.start()
        else:
            self.scanned.set()

    def stop(self) -> None:
        self._stop.set()

    def found(self) -> list[int]:
        """Identities found since the last call, each once."""
        with self._lock:
            got, self._found = self._found, []
        return got

    def _run(self) -> None:
        backoff = self.cfg.mqtt.backoff()
        index = self.count
        while index < MAX_WORKER_INDEX and not self._stop.is_set():
            secret = self._password_file(self.cfg, index)
            if secret is not None and not secret.is_file():
                break  # no such worker user was ever rendered for this instance
            try:
                present = has_session(self.settings(index), self.client_id(index), self.cfg.session_expiry_s)
            except PermissionError:
                break  # not (or no longer) a broker user: it can have no session to drain
            except (OSError, wire.ProtocolError) as exc:
                delay = backoff.after_failure()
                log.info("cannot look for retired worker sessions yet (%s); again in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            if not present:
                break
            log.warning("worker identity %s has a session but this instance runs %d workers: draining it",
                        self.client_id(index), self.count)
            with self._lock:
                self._found.append(index)
            index += 1
        self.scanned.set()

    def end(self, index: int) -> None:
        """The drainer of ``index`` stored everything: end its session (retried while the broker is away)."""
        backoff = self.cfg.mqtt.backoff()
        for _ in range(10):
            try:
                end_session(self.settings(index), self.client_id(index))
                log.info("retired worker session %s drained and ended", self.client_id(index))
                return
            except (OSError, wire.ProtocolError, PermissionError) as exc:
                log.warning("cannot end the retired session %s yet: %s", self.client_id(index), exc)
                if self._stop.wait(backoff.after_failure()):
                    return
        log.error("gave up ending the retired session %s; it is drained and empty", self.client_id(index))
