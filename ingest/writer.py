"""Write line-protocol batches to InfluxDB, synchronously, with a clear error model.

Two transports behind one interface:
- ``v2``: influxdb-client's /api/v2/write (InfluxDB 1.8+, 2.x, 3.x);
- ``v1``: plain HTTP /write (InfluxDB 1.x before 1.8).

:class:`WriteError` says whether retrying can help: connection failures, 5xx and
429 are retryable; other 4xx (type conflicts, bad lines) never will be, and the
caller splits the batch to find and dead-letter the offending point.

:class:`BatchWriter` on top writes a batch durably: it retries with backoff while InfluxDB
is away, and bisects around points it refuses.

The caller acks a batch's MQTT messages only when :meth:`BatchWriter.write`
returns True, i.e. InfluxDB confirmed every point (or the point was
dead-lettered as a ``rejected`` point because InfluxDB will never accept it,
e.g. a field type conflict). A permanent 4xx must not block the stream, and
must not drop the good points that happened to share its batch.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Protocol

import urllib3

from storage.connection import InfluxConnection
from storage.lineproto import Point

from .config import BatchSettings
from .stats import IngestStats


class WriteError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def _classify(status: int, body: str) -> WriteError:
    msg = body
    try:
        parsed = json.loads(body)
        msg = parsed.get("error") or parsed.get("message") or body
    except (ValueError, AttributeError):
        pass
    retryable = status >= 500 or status in (408, 429)
    return WriteError(f"InfluxDB HTTP {status}: {msg}"[:1000], retryable=retryable, status=status)


class Writer(Protocol):
    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class V1Writer:
    """POST /write?db=...&precision=ns (InfluxDB 1.x)."""

    def __init__(self, settings: InfluxConnection) -> None:
        self._settings = settings
        params = {"db": settings.database, "precision": "ns"}
        if settings.username:
            params["u"] = settings.username
            params["p"] = settings.secret_password() or ""
        self._url = f"{settings.url.rstrip('/')}/write?{urllib.parse.urlencode(params)}"
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(total=settings.timeout_s), maxsize=2
        )

    def write(self, lines: Sequence[str]) -> None:
        body = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            resp = self._http.request("POST", self._url, body=body, headers={"Content-Type": "text/plain"})
        except urllib3.exceptions.HTTPError as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._settings.url}: {exc}", retryable=True) from None
        if resp.status not in (200, 204):
            raise _classify(resp.status, resp.data.decode("utf-8", errors="replace"))

    def close(self) -> None:
        self._http.clear()


class V2Writer:
    """influxdb-client's synchronous write API (no client-side retries: we own retry policy)."""

    def __init__(self, settings: InfluxConnection) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._settings = settings
        self._client = InfluxDBClient(
            url=settings.url,
            token=settings.secret_token() or "",
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self._settings.database,
                org=self._settings.org,
                record="\n".join(lines),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            raise _classify(int(exc.status or 0), str(exc.body or exc.reason)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._settings.url}: {exc}", retryable=True) from None

    def close(self) -> None:
        self._api.close()
        self._client.close()


def make_writer(settings: InfluxConnection) -> Writer:
    return V2Writer(settings) if settings.api == "v2" else V1Writer(settings)


log = logging.getLogger("hailong.ingest")


class BatchWriter:
    def __init__(self, writer: Writer, settings: BatchSettings, stats: IngestStats,
                 dead_letter: Callable[[Point, str], Point]) -> None:
        self.writer = writer
        self.settings = settings
        self.stats = stats
        self._dead_letter = dead_letter
        self.last_write_ok: bool | None = None

    def write(self, points: list[Point], stop: threading.Event, beat: Callable[[], None]) -> bool:
        """Write until confirmed; False only if ``stop`` is set while InfluxDB is still failing."""
        delay = self.settings.retry_initial_ms / 1000
        while True:
            try:
                self._write_splitting([p.to_line() for p in points], points)
                self.last_write_ok = True
                return True
            except WriteError as exc:
                self.last_write_ok = False
                self.stats.write_failures += 1
                log.warning("InfluxDB write of %d points failed, retry in %.1fs: %s", len(points), delay, exc)
                beat()  # waiting for InfluxDB is not a hang: keep the watchdog fed
                if stop.wait(delay):
                    # one last attempt so SIGTERM does not throw away a ready batch
                    try:
                        self._write_splitting([p.to_line() for p in points], points)
                        return True
                    except WriteError:
                        return False
                delay = min(delay * 2, self.settings.retry_max_ms / 1000)

    def _write_splitting(self, lines: list[str], points: list[Point]) -> None:
        """Write; on a permanent 4xx bisect until the bad points are isolated, dead-letter them."""
        try:
            self.writer.write(lines)
            self.stats.written += len(lines)
            return
        except WriteError as exc:
            if exc.retryable:
                raise
            if len(lines) == 1:
                self.stats.dead_lettered += 1
                self.stats.count_rejected("write_rejected")
                log.error("point permanently rejected by InfluxDB, dead-lettered: %s", exc)
                dead = self._dead_letter(points[0], str(exc))
                self.writer.write([dead.to_line()])
                return
        mid = len(lines) // 2
        self._write_splitting(lines[:mid], points[:mid])
        self._write_splitting(lines[mid:], points[mid:])

    def write_once(self, points: list[Point]) -> bool:
        try:
            self.writer.write([p.to_line() for p in points])
            return True
        except WriteError as exc:
            log.warning("could not write %d self-metric points: %s", len(points), exc)
            return False

    def close(self) -> None:
        self.writer.close()
