"""InfluxDB line protocol, written by hand.

Small and exact: the same event must always produce byte-identical lines so a
redelivered rating overwrites its own point instead of adding one (DESIGN.md,
idempotent writes). Works for InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

FieldValue = bool | int | float | str

_KEY_SPECIALS = frozenset("\\, =\n")


# Tag keys, tag values and field keys repeat on nearly every point (the same centres, counters,
# officers, field names): escaping each distinct string once, from a bounded cache, takes the
# escaping off the per-rating hot path (issue 14). Ticket numbers and event ids are fields,
# never keys, so the cache's working set stays the fleet's size.
@lru_cache(maxsize=65_536)
def _escape_key(s: str) -> str:
    # measurement names, tag keys/values and field keys: comma, equals, space
    if _KEY_SPECIALS.isdisjoint(s):
        return s
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ").replace("\n", "\\n")


@lru_cache(maxsize=1024)
def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("\n", "\\n")


def _field(v: FieldValue) -> str:
    if isinstance(v, str):  # most fields: checked first
        # Only `"` and `\` are escaped in a string field; a newline (or CR, tab) is stored as sent.
        # InfluxDB 1.6.7 keeps a newline inside a quoted field value (tests/ingest/test_lineproto.py).
        if "\\" in v or '"' in v:
            v = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    return repr(v)


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. Empty tag values are dropped (InfluxDB forbids them)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        tags, fields = self.tags, self.fields
        if not fields:
            raise ValueError(f"point {self.measurement} has no fields")
        head = ",".join([_escape_measurement(self.measurement),
                         *[f"{_escape_key(k)}={_escape_key(tags[k])}" for k in sorted(tags) if tags[k] != ""]])
        body = ",".join([f"{_escape_key(k)}={_field(fields[k])}" for k in sorted(fields)])
        return f"{head} {body} {self.time_ns}"
