"""InfluxDB line protocol, written by hand.

Small and exact: the same event must always produce byte-identical lines so a
redelivered rating overwrites its own point instead of adding one (DESIGN.md,
idempotent writes). Works for InfluxDB 1.x, 2.x and 3.x.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = bool | int | float | str


def _escape_key(s: str) -> str:
    # measurement names, tag keys/values and field keys: comma, equals, space
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ").replace("\n", "\\n")


def _escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("\n", "\\n")


def _field(v: FieldValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    # Only `"` and `\` are escaped in a string field; a newline (or CR, tab) is stored as sent.
    # InfluxDB 1.6.7 keeps a newline inside a quoted field value (tests/ingest/test_lineproto.py).
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. Empty tag values are dropped (InfluxDB forbids them)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

    def to_line(self) -> str:
        parts = [_escape_measurement(self.measurement)]
        for k in sorted(self.tags):
            v = self.tags[k]
            if v != "":
                parts.append(f"{_escape_key(k)}={_escape_key(v)}")
        fields = ",".join(f"{_escape_key(k)}={_field(v)}" for k, v in sorted(self.fields.items()))
        if not fields:
            raise ValueError(f"point {self.measurement} has no fields")
        return f"{','.join(parts)} {fields} {self.time_ns}"
