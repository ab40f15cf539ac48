"""The ingest's batch writer: a batch is written durably before its MQTT messages are acked.

The transports (v1 /write, v2 /api/v2/write) and their error model are storage/writer.py's:
:class:`~storage.writer.WriteError` says whether retrying can help (connection failures, 5xx and
429 are retryable; other 4xx -- type conflicts, bad lines -- never will be).

:class:`BatchWriter` retries with backoff while InfluxDB is away, and bisects around points it
refuses (storage.writer.write_retrying, write_bisecting: the national consumer writes the same way),
counting and dead-lettering them as the ingest does. The caller acks a batch's MQTT messages only
when :meth:`BatchWriter.write` returns True, i.e. InfluxDB confirmed every point (or the point was
dead-lettered as a ``rejected`` point because InfluxDB will never accept it, e.g. a field type
conflict). A permanent 4xx must not block the stream, and must not drop the good points that
happened to share its batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from storage.lineproto import Point
from storage.writer import WriteError, Writer, write_bisecting, write_retrying

from .config import BatchSettings
from .stats import IngestStats

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
        lines = [p.to_line() for p in points]

        def attempt() -> None:
            self.stats.written += write_bisecting(self.writer, lines, points, self._refused)

        def failed(exc: WriteError, delay: float) -> None:
            self.last_write_ok = False
            self.stats.write_failures += 1
            log.warning("InfluxDB write of %d points failed, retry in %.1fs: %s", len(points), delay, exc)
            beat()  # waiting for InfluxDB is not a hang: keep the watchdog fed

        ok = write_retrying(attempt, stop, self.settings.retry_initial_ms / 1000, self.settings.retry_max_ms / 1000,
                            failed, last_attempt=True)
        if ok:
            self.last_write_ok = True
        return ok

    def _refused(self, point: Point, _line: str, exc: WriteError) -> Point:
        self.stats.dead_lettered += 1
        self.stats.count_rejected("write_rejected")
        log.error("point permanently rejected by InfluxDB, dead-lettered: %s", exc)
        return self._dead_letter(point, str(exc))

    def write_once(self, points: list[Point]) -> bool:
        try:
            self.writer.write([p.to_line() for p in points])
            return True
        except WriteError as exc:
            log.warning("could not write %d self-metric points: %s", len(points), exc)
            return False

    def close(self) -> None:
        self.writer.close()
