"""Template variables shared by the boards: one SHOW TAG VALUES variable per tag key.

Its own module so that every board module (boards.py, boards_fleet.py, boards_integrity.py)
can use it without importing boards.py (which imports them).
"""

from __future__ import annotations

from .grafana import Variable

VAR_LABELS = {"province": "Tỉnh", "centre": "Trung tâm", "counter": "Quầy", "officer": "Cán bộ",
              "service": "Lĩnh vực", "device": "Thiết bị"}


def tag_variables(measurement: str, keys: tuple[str, ...], single: tuple[str, ...] = ()) -> tuple[Variable, ...]:
    """One SHOW TAG VALUES variable per key, each filtered by the ones before it; ``single`` ones offer no All."""
    out = []
    for i, key in enumerate(keys):
        before = keys[:i]
        where = " WHERE " + " AND ".join(f'"{k}" =~ /^${k}$/' for k in before) if before else ""
        out.append(Variable(key, VAR_LABELS[key], f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{key}"{where}',
                            single=key in single))
    return tuple(out)


__all__ = ["VAR_LABELS", "tag_variables"]
