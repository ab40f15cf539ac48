"""What the national consumer stores, and the revisions it already holds.

``agg_centre_day``: one point per (province, centre, day), stamped at the day's local
midnight, tags province and centre, the counts, revision and digest as fields. A higher
revision is written over the same point (same series, same timestamp), so the national
series per centre holds exactly one value per day, whatever was re-sent.

``agg_rejected``: what was refused, with the reason, the topic's province (when the topic
could be read), the topic, the payload (truncated) and the detail.

:class:`RevisionIndex` remembers (revision, digest) per centre-day, loaded at start from the
points of the last ``lookback_days``; an older day is looked up in InfluxDB when needed.
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from broker.federation import CentreDay
from storage.influxql import InfluxQL
from storage.lineproto import Point
from storage.schema import MAX_REJECTED_PAYLOAD, Field, Measurement, Tag

log = logging.getLogger("hailong.national")

Key = tuple[str, str, str]  # province, centre, day


def day_time_ns(day: str, tz: str) -> int:
    """Local midnight of ``day`` in ``tz``, in ns (the centre-day point's timestamp)."""
    midnight = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), ZoneInfo(tz))
    return int(midnight.timestamp()) * 1_000_000_000


def centre_day_point(msg: CentreDay, tz: str) -> Point:
    fields: dict[str, int | str] = {
        Field.RATED: msg.rated, Field.NOT_SATISFIED: msg.not_satisfied, Field.SATISFIED: msg.satisfied,
        Field.VERY_SATISFIED: msg.very_satisfied, Field.WALKUPS: msg.walkups, Field.SERVED: msg.served,
        Field.REVISION: msg.revision, Field.DIGEST: msg.digest,
    }
    return Point(Measurement.AGG_CENTRE_DAY, {Tag.PROVINCE: msg.province, Tag.CENTRE: msg.centre}, fields,
                 day_time_ns(msg.day, tz))


def rejected_point(reason: str, province: str, topic: str, payload: bytes, detail: str, time_ns: int) -> Point:
    return Point(Measurement.AGG_REJECTED, {Tag.REASON: reason, Tag.PROVINCE: province},
                 {Field.TOPIC: topic[:256], Field.PAYLOAD: payload[:MAX_REJECTED_PAYLOAD].decode("utf-8", "replace"),
                  Field.DETAIL: detail[:1024]}, time_ns)


def received_points(provinces: dict[str, int], time_ns: int) -> list[Point]:
    """``agg_received``: aggregates that arrived in one batch, per province (stored, duplicate or older alike)."""
    return [Point(Measurement.AGG_RECEIVED, {Tag.PROVINCE: p}, {Field.N: n}, time_ns) for p, n in provinces.items()]


def roster_points(centres: dict[str, str], day: str, tz: str) -> list[Point]:
    """``agg_roster``: centres per province on ``day`` (the completeness panel's expected centre-days)."""
    per: dict[str, int] = {}
    for province in centres.values():
        per[province] = per.get(province, 0) + 1
    return [Point(Measurement.AGG_ROSTER, {Tag.PROVINCE: p}, {Field.CENTRES: n}, day_time_ns(day, tz))
            for p, n in sorted(per.items())]


class RevisionIndex:
    """(province, centre, day) -> (revision, digest) of what is stored."""

    def __init__(self, db: InfluxQL, tz: str, lookback_days: int) -> None:
        self.db, self.tz, self.lookback_days = db, tz, lookback_days
        self._known: dict[Key, tuple[int, str]] = {}
        self._since = ""  # days before this were not loaded: ask InfluxDB

    def __len__(self) -> int:
        return len(self._known)

    def load(self, now: dt.datetime | None = None) -> int:
        today = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(self.tz)).date()
        self._since = (today - dt.timedelta(days=self.lookback_days)).isoformat()
        start_ns = day_time_ns(self._since, self.tz)
        q = (f'SELECT "{Field.REVISION}", "{Field.DIGEST}" FROM "{Measurement.AGG_CENTRE_DAY}" '
             f'WHERE time >= {start_ns} GROUP BY "{Tag.PROVINCE}", "{Tag.CENTRE}"')
        self._known.clear()
        for series in self.db.query(q):
            province, centre = series.tags.get(Tag.PROVINCE, ""), series.tags.get(Tag.CENTRE, "")
            for t, revision, digest in series.values:
                if revision is not None:
                    self._known[(province, centre, self._day(int(t)))] = (int(revision), str(digest))
        log.info("revision index: %d centre-days since %s", len(self._known), self._since)
        return len(self._known)

    def _day(self, epoch_ms: int) -> str:
        return dt.datetime.fromtimestamp(epoch_ms / 1000, ZoneInfo(self.tz)).date().isoformat()

    def get(self, key: Key) -> tuple[int, str] | None:
        known = self._known.get(key)
        if known is not None or key[2] >= self._since:
            return known
        province, centre, day = key  # older than what was loaded: one point, read once
        q = (f'SELECT "{Field.REVISION}", "{Field.DIGEST}" FROM "{Measurement.AGG_CENTRE_DAY}" '
             f"WHERE \"{Tag.PROVINCE}\" = '{province}' AND \"{Tag.CENTRE}\" = '{centre}' "
             f"AND time = {day_time_ns(day, self.tz)}")
        rows = self.db.rows(q)
        if rows and rows[0].get(Field.REVISION) is not None:
            known = (int(rows[0][Field.REVISION]), str(rows[0][Field.DIGEST]))
            self._known[key] = known
        return known

    def put(self, key: Key, revision: int, digest: str) -> None:
        self._known[key] = (revision, digest)
