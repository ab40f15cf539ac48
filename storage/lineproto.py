"""InfluxDB line protocol, written by hand.

Small and exact: the same event must always produce byte-identical lines so a
redelivered rating overwrites its own point instead of adding one (DESIGN.md,
idempotent writes). Works for InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

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


def _string_field(v: str) -> str:
    # Only `"` and `\` are escaped in a string field; a newline (or CR, tab) is stored as sent.
    # InfluxDB 1.6.7 keeps a newline inside a quoted field value (tests/ingest/test_lineproto.py).
    if "\\" in v or '"' in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{v}"'


def _other_field(v: FieldValue) -> str:
    """A field value that is not exactly a str or an int (those are encoded inline in to_line)."""
    if isinstance(v, str):
        return _string_field(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    return repr(v)


@lru_cache(maxsize=65_536)
def _head(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,k=v,...`` with the tags sorted, empty values dropped.

    Cached whole: a fleet's points repeat a few thousand tag sets (centre, counter, officer, device...),
    so after the first point of a set its head costs one tuple hash (issue 14).
    """
    return ",".join([_escape_measurement(measurement),
                     *[f"{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags) if v != ""]])


@lru_cache(maxsize=4096)
def _field_keys(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, escaped key + "=") in sorted order, per distinct field-key set (a handful per measurement)."""
    return tuple((k, f"{_escape_key(k)}=") for k in sorted(keys))


class Point(NamedTuple):
    """One InfluxDB point. Empty tag values are dropped (InfluxDB forbids them).

    A NamedTuple (immutable like the frozen dataclass it was, cheaper to build: one per message).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        fields = self.fields
        if not fields:
            raise ValueError(f"point {self.measurement} has no fields")
        body = []
        for k, key in _field_keys(tuple(fields)):
            v = fields[k]
            kind = type(v)
            if kind is str:  # most fields
                body.append(key + _string_field(v))  # type: ignore[arg-type]
            elif kind is int:
                body.append(f"{key}{v}i")
            else:
                body.append(key + _other_field(v))
        return f"{_head(self.measurement, tuple(self.tags.items()))} {','.join(body)} {self.time_ns}"
