"""UI text catalogues, one TOML file per language (vi default, en).

Labels are listed best level first for each scale, the order they appear on
screen; they and the reason labels come from the rating scale both surfaces share
(broker/ratingscale/: the web rating page shows the same words). A missing key is a
bug: :func:`load_catalogue` checks every catalogue has the same keys as Vietnamese,
so a new string cannot be forgotten in one language.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from broker import ratingscale

LANGUAGES = ("vi", "en")
_DIR = Path(__file__).parent


def _keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


class Catalogue:
    def __init__(self, language: str, data: dict[str, Any]) -> None:
        self.language = language
        self.data = data

    def text(self, key: str, **fmt: object) -> str:
        node: Any = self.data
        for part in key.split("."):
            node = node[part]
        return str(node).format(**fmt) if fmt else str(node)

    def levels(self, scale: int) -> list[str]:
        """Labels best first."""
        return ratingscale.levels(self.language, scale)

    def reason(self, code: str) -> str:
        return ratingscale.reason_label(self.language, code)


@cache
def load_catalogue(language: str) -> Catalogue:
    if language not in LANGUAGES:
        raise ValueError(f"no UI catalogue for language {language!r}; have {LANGUAGES}")
    data = tomllib.loads((_DIR / f"{language}.toml").read_text(encoding="utf-8"))
    if language != "vi":
        missing = _keys(load_catalogue("vi").data) - _keys(data)
        if missing:
            raise ValueError(f"catalogue {language}.toml lacks {sorted(missing)}")
    return Catalogue(language, data)
