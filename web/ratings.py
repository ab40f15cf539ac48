"""From a link and a form to a durable rating: check the link, build the RatingEvent, commit it.

A rating is committed to the service's own outbox (broker/mqtt/outbox.py: SQLite, WAL,
synchronous=FULL) before the citizen reads "Cảm ơn"; the publisher sends it at QoS 1 and it
leaves the outbox on PUBACK. Its event id is derived from the link (broker.weblink.event_id),
so a double submit or a replayed POST is recognised by the outbox's ``seen`` table and never
queued twice; the ingest applies one rating per ticket across every channel.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from broker import weblink
from broker.contract import WEB_ANY_COUNTER, WEB_DEVICE, RatingEvent, web_rating_topic
from broker.fleet.registry import Registry
from broker.mqtt.outbox import Outbox

from .config import CentreScale, WebConfig

log = logging.getLogger("hailong.web")


class Queued(NamedTuple):
    """What the outbox takes (broker.mqtt.outbox.Queueable)."""

    event_id: str
    topic: str
    event: RatingEvent


@dataclass(frozen=True, slots=True)
class Checked:
    """A genuine, unexpired link of a known centre, with what the page shows."""

    token: str
    link: weblink.TicketLink
    centre_name: str
    counter_label: str | None
    scale: CentreScale
    event_id: str


class LinkRefused(Exception):
    """``reason``: invalid (malformed, forged, altered, unknown centre or key) or expired."""

    def __init__(self, reason: str, expires: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expires = expires


class Keys:
    """The centres' link keys, re-read when a key file changes (a rotation or revocation needs no restart).

    A terminal's link verifies under the key derived for its counter (broker.weblink.verify), so the
    service needs no terminal's key: it derives them from the centre's."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[float, CentreKeys]] = {}
        self._lock = threading.Lock()

    def of(self, centre: str) -> CentreKeys:
        path = self.directory / f"{centre}.toml"
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            return CentreKeys({}, {})
        with self._lock:
            hit = self._cache.get(centre)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        ring = weblink.Keyring.parse(centre, path.read_text(encoding="utf-8"), str(path))
        keys = CentreKeys(ring.secrets(), ring.revoked())
        with self._lock:
            self._cache[centre] = (stamp, keys)
        return keys


class CentreKeys(NamedTuple):
    """What verifies a centre's links: key id -> secret, and the terminal keys revoked per key id."""

    secrets: dict[int, bytes]
    revoked: dict[int, tuple[str, ...]]


class GroupCommit:
    """Submissions arriving together share one outbox transaction (one fsync): at 200 submissions a second a
    commit per rating would queue them behind each other's fsync. Each caller learns only once its own rating
    is durable, and whether it was new.

    A caller gets a Future, resolved by the commit thread: the HTTP handler awaits it on the event loop
    (:meth:`RatingDesk.submit_async`), so a submission costs no thread of its own. Before, each waited in a
    thread-pool thread on one Condition: on a loaded 2-core machine, waking dozens of waiting threads one after
    the other after every commit took hundreds of milliseconds (bench/web_submit.py: p99 436 ms while the
    commits themselves took < 45 ms)."""

    def __init__(self, outbox: Outbox, max_batch: int = 256) -> None:
        self.outbox = outbox
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._waiting: list[tuple[Queued, Future[bool]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="web-commit", daemon=True)
        self._thread.start()

    def submit(self, item: Queued) -> Future[bool]:
        """Queue ``item`` for the next commit; the future is True (queued), False (a link used before) or raises."""
        future: Future[bool] = Future()
        with self._cond:
            if self._stop:
                raise RuntimeError("outbox committer stopped")
            self._waiting.append((item, future))
            self._cond.notify()
        return future

    def commit(self, item: Queued) -> bool:
        """The same, waiting in this thread."""
        return self.submit(item).result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait()
                if self._stop and not self._waiting:
                    return
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch:]
            try:
                new = set(self.outbox.enqueue([item for item, _ in batch]).new)
            except Exception as exc:  # the callers answer 503: nothing was promised
                log.exception("outbox commit of %d ratings failed", len(batch))
                for _, future in batch:
                    future.set_exception(RuntimeError(f"outbox commit failed: {type(exc).__name__}"))
                continue
            for item, future in batch:
                future.set_result(item.event_id in new)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(5)


class RatingDesk:
    """The service's rules, without HTTP (web/app.py is the HTTP side)."""

    def __init__(self, cfg: WebConfig, registry: Registry, outbox: Outbox) -> None:
        self.cfg = cfg
        self.registry = registry
        self.outbox = outbox
        self.keys = Keys(cfg.keys_path)
        self.committer = GroupCommit(outbox)
        self.boot_id = f"web-{os.urandom(6).hex()}"
        self._mono0 = time.monotonic()
        self._seq_lock = threading.Lock()
        self._last_seq = 0

    def check(self, token: str, now_s: int | None = None) -> Checked:
        now = int(time.time()) if now_s is None else now_s
        try:
            raw = weblink.decode(token)
        except weblink.LinkError:
            raise LinkRefused("invalid") from None
        centre = self.registry.centres.get(raw.link.centre)
        if centre is None or not centre.has_qms:
            raise LinkRefused("invalid")  # a phone rating is bound by the QMS close: no QMS, no link
        try:
            keys = self.keys.of(raw.link.centre)
            link = weblink.verify(token, keys.secrets, now, keys.revoked)
        except weblink.LinkError as exc:
            if exc.reason == "expired":
                raise LinkRefused("expired", raw.link.expires) from None
            raise LinkRefused("invalid") from None
        counter = self.registry.counters.get((link.centre, link.counter)) if link.counter else None
        return Checked(token, link, centre.name, counter.label if counter is not None else None,
                       self.cfg.scale_of(link.centre), weblink.event_id(token))

    def already_rated(self, checked: Checked) -> bool:
        return self.outbox.seen(checked.event_id)

    def _next_seq(self) -> int:
        # microseconds since the epoch, strictly increasing: unique per rating of this "device", so the
        # ingest's timestamp (rated_at ms * 1e6 + seq mod 1e6 ns) never puts two ratings on one point
        with self._seq_lock:
            seq = max(time.time_ns() // 1000, self._last_seq + 1)
            self._last_seq = seq
            return seq

    def event(self, checked: Checked, score: int, reasons: tuple[str, ...], comment: str | None) -> RatingEvent:
        link = checked.link
        now = int(time.time() * 1000)
        return RatingEvent(
            v=1, event_id=checked.event_id, seq=self._next_seq(), device=WEB_DEVICE, centre=link.centre,
            counter=link.counter or WEB_ANY_COUNTER, officer=WEB_DEVICE, ticket=link.ticket,
            ticket_id=link.ticket_id, scale=checked.scale.scale, score=score, reasons=reasons, input="web",
            source=link.source, service_day=link.day.isoformat(), link_expires_at=link.expires * 1000,
            comment=comment, closed_at=None, rated_at=now, sent_at=now, boot_id=self.boot_id,
            mono_ms=int((time.monotonic() - self._mono0) * 1000))

    def submit(self, checked: Checked, score: int, reasons: tuple[str, ...], comment: str | None) -> bool:
        """Commit the rating durably; False when this link had already been used (nothing queued)."""
        event = self.event(checked, score, reasons, comment)
        return self._queued(checked, event, self.committer.commit(self._item(event)))

    async def submit_async(self, checked: Checked, score: int, reasons: tuple[str, ...],
                           comment: str | None) -> bool:
        """:meth:`submit` for the event loop: awaits the group commit without holding a thread."""
        event = self.event(checked, score, reasons, comment)
        return self._queued(checked, event, await asyncio.wrap_future(self.committer.submit(self._item(event))))

    @staticmethod
    def _item(event: RatingEvent) -> Queued:
        return Queued(event.event_id, web_rating_topic(event.centre), event)

    @staticmethod
    def _queued(checked: Checked, event: RatingEvent, new: bool) -> bool:
        if new:
            log.info("rating queued: centre %s link %s score %d/%d", event.centre,
                     weblink.fingerprint(checked.token), event.score, event.scale)
        return new


def expiry_text(expires: int, timezone: str) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(expires, ZoneInfo(timezone)).strftime("%H:%M %d/%m/%Y")
