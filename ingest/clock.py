"""Device clock correction and absurd-timestamp rejection.

A Pi without an RTC can boot at 1970 or with a clock far ahead until NTP syncs.
``sent_at`` is stamped by the device clock just before publishing, so
``received - sent_at`` estimates how wrong that clock is -- but it also
includes however long the message waited on the broker (ingest down, backlog).
The two cannot be told apart for a clock that is *behind* but plausible, so we
correct only what is unambiguous:

- ``sent_at`` before ``min_plausible_ms`` (clock never set since boot), or
- ``sent_at`` ahead of our clock by more than ``max_ahead_s`` (a message cannot
  arrive before it was sent).

Correcting shifts rated_at and closed_at by the same offset (so response_ms is
unchanged) and marks the rating ``clock_corrected``. A redelivered rating must
produce the identical point, yet its offset differs on every delivery, so the
first corrected times are remembered per event_id (bounded; rebuilt from
InfluxDB at start) and reused.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from broker.contract import RatingEvent
from storage.influxql import InfluxQL
from storage.schema import Field, Measurement

from .config import ClockSettings
from .rejection import RuleRejection

SENT_BEFORE_RATED_TOLERANCE_MS = 2000


class RatingTimes(NamedTuple):  # one per rating: a NamedTuple is cheaper to build than a frozen dataclass
    rated_at_ms: int
    closed_at_ms: int | None
    corrected: bool


class ClockCorrector:
    def __init__(self, settings: ClockSettings, remember: int = 200_000) -> None:
        self.settings = settings
        self._remember = remember
        self._known: OrderedDict[str, RatingTimes] = OrderedDict()

    def times(self, event: RatingEvent, received_ms: int) -> RatingTimes:
        """The times to store for ``event``; raise RuleRejection("absurd_timestamp") when impossible."""
        known = self._known.get(event.event_id)
        if known is not None:
            return known
        s = self.settings
        if event.rated_at > event.sent_at + SENT_BEFORE_RATED_TOLERANCE_MS:
            raise RuleRejection("absurd_timestamp",
                                f"rated_at {event.rated_at} is after sent_at {event.sent_at}", "rated_at")
        if event.sent_at - event.rated_at > s.max_outbox_age_s * 1000:
            raise RuleRejection("absurd_timestamp", f"rated {(event.sent_at - event.rated_at) // 1000}s before it "
                                f"was sent (max outbox age {s.max_outbox_age_s}s)", "rated_at")
        offset = received_ms - event.sent_at
        corrected = event.sent_at < s.min_plausible_ms or offset < -s.max_ahead_s * 1000
        if not corrected:
            offset = 0
        rated = event.rated_at + offset
        if received_ms - rated > s.max_age_s * 1000:
            raise RuleRejection("absurd_timestamp",
                                f"rated_at {event.rated_at} is older than {s.max_age_s}s", "rated_at")
        closed = event.closed_at + offset if event.closed_at is not None else None
        result = RatingTimes(rated, closed, corrected)
        if corrected:
            self.remember(event.event_id, result)
        return result

    def remember(self, event_id: str, times: RatingTimes) -> None:
        self._known[event_id] = times
        while len(self._known) > self._remember:
            self._known.popitem(last=False)

    def rebuild(self, db: InfluxQL, lookback_s: int) -> int:
        """Remember the times of recently stored corrected ratings (so a redelivery rewrites the same point)."""
        rows = db.rows(f'SELECT "{Field.EVENT_ID}", "{Field.RESPONSE_MS}" FROM "{Measurement.RATING}" '
                       f'WHERE time > now() - {int(lookback_s)}s AND "{Field.CLOCK_CORRECTED}" = true', epoch="ns")
        for row in rows:
            rated = int(row["time"]) // 1_000_000
            response = row.get(Field.RESPONSE_MS)
            closed = rated - int(response) if response is not None else None
            self.remember(str(row[Field.EVENT_ID]), RatingTimes(rated, closed, True))
        return len(rows)
