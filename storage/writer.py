"""Write line-protocol lines to InfluxDB, synchronously, with a clear error model.

Two transports behind one interface:
- ``v2``: influxdb-client's /api/v2/write (InfluxDB 1.8+, 2.x, 3.x);
- ``v1``: plain HTTP /write (InfluxDB 1.x before 1.8).

:class:`WriteError` says whether retrying can help: connection failures, 5xx and
429 are retryable; other 4xx (type conflicts, bad lines) never will be.

Shared by every writer of the project: the ingest (ingest/writer.py) and the national consumer
(national/). Both write a batch durably the same way, before they ack its MQTT messages:
:func:`write_retrying` retries while InfluxDB is away (doubling, capped waits), and
:func:`write_bisecting` narrows a permanent refusal to the points InfluxDB refuses, writing each
one's dead-letter point instead, so one bad point neither blocks the stream nor drops the good
points that shared its batch.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Protocol

import urllib3

from .connection import InfluxConnection
from .lineproto import Point


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


def write_bisecting(writer: Writer, lines: Sequence[str], points: Sequence[Point],
                    refused: Callable[[Point, str, WriteError], Point]) -> int:
    """Write ``lines`` (``points`` as line protocol); return how many InfluxDB took as they were.

    A permanent refusal (4xx: a field type conflict, a bad line) is bisected until the refused point
    is alone; ``refused(point, line, error)`` counts and logs it and returns its dead-letter point,
    which is written instead. A retryable error is raised: the caller writes the whole batch again
    (points are idempotent, so halves already written are not counted twice in InfluxDB)."""
    try:
        writer.write(lines)
        return len(lines)
    except WriteError as exc:
        if exc.retryable:
            raise
        if len(lines) == 1:
            writer.write([refused(points[0], lines[0], exc).to_line()])
            return 0
    mid = len(lines) // 2
    return (write_bisecting(writer, lines[:mid], points[:mid], refused)
            + write_bisecting(writer, lines[mid:], points[mid:], refused))


def write_retrying(attempt: Callable[[], object], stop: threading.Event, initial_s: float, max_s: float,
                   failed: Callable[[WriteError, float], None], *, last_attempt: bool = False) -> bool:
    """Call ``attempt`` until it raises no WriteError; True once it did.

    After each failure ``failed(error, wait_s)`` is told (count it, log it, feed the watchdog: waiting
    for InfluxDB is not a hang), then the wait doubles from ``initial_s`` up to ``max_s``. False only
    when ``stop`` is set while InfluxDB still fails; with ``last_attempt`` one more try is made then, so
    a SIGTERM does not throw away a batch that is ready."""
    delay = initial_s
    while True:
        try:
            attempt()
            return True
        except WriteError as exc:
            failed(exc, delay)
            if stop.wait(delay):
                if not last_attempt:
                    return False
                try:
                    attempt()
                    return True
                except WriteError:
                    return False
            delay = min(delay * 2, max_s)
