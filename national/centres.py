"""Which centre belongs to which province: the list the national side accepts aggregates for.

Rendered by ``hailong national render`` (national/render.py) from ``provinces.toml`` into
``centres.json``::

    {"v": 1, "centres": {"<centre>": "<province>", ...}}

A centre id is unique nationally (the same id in two provinces is refused at render).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from broker.contract import ID_PATTERN
from broker.kernel.settings import ConfigError

_ID = re.compile(ID_PATTERN)


def load_centres(path: Path) -> dict[str, str]:
    """centre -> province; every problem is a ConfigError naming the file and the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, None, "file not found (render it with `hailong national render`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("centres"), dict):
        raise ConfigError(path, "centres", 'expected {"v": 1, "centres": {"<centre>": "<province>"}}')
    out: dict[str, str] = {}
    for centre, province in data["centres"].items():
        if not _ID.match(centre) or not isinstance(province, str) or not _ID.match(province):
            raise ConfigError(path, f"centres.{centre}", f"centre and province must match {ID_PATTERN}")
        out[centre] = province
    return out


def dump_centres(centres: dict[str, str]) -> str:
    return json.dumps({"v": 1, "centres": dict(sorted(centres.items()))}, indent=1, ensure_ascii=False) + "\n"
