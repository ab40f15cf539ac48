"""The rating scale both rating surfaces show: the terminal (device/) and the web page (web/).

Per scale (3, 4 or 5 levels), best first: each level's label in each language, its colours and
its face (mouth curve, eyes, brows, open mouth), and the labels of the low-score reasons. The
terminal draws the faces with Kivy canvas instructions (device/ui/widgets.py), the web page with
SVG (web/faces.py), both from :func:`level_style`; the words come from ``vi.toml`` / ``en.toml``
beside this file. Standard library only: it runs on the Pi.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("vi", "en")
_DIR = Path(__file__).parent


@dataclass(frozen=True)
class LevelStyle:
    tone: str
    tile: str     # tile background (label text is INK on it)
    face: str     # face fill
    curve: float  # mouth: +1 wide smile .. -1 frown
    open_mouth: bool = False  # the scale's ends: an open laugh / wail, a shape that reads in greyscale
    eyes: str = "dots"        # "arcs" (closed, smiling), "dots", "dashes" (flat), "squeezed" (> <)
    brows: bool = False       # sad brows, inner ends raised


# Neighbouring levels differ in eyes, brows and mouth, and their fills differ in grey (luma, ITU-R
# 601: green 102, blue 147, yellow 178, red 110, crimson 86), so every neighbouring pair of every
# scale passes the greyscale test, including "Hài lòng" beside "Không hài lòng" on the 3-level scale.
LEVEL_STYLES = {
    "very_satisfied": LevelStyle("very_satisfied", "#D4EED6", "#2E8B3E", 1.0, open_mouth=True, eyes="arcs"),
    "satisfied": LevelStyle("satisfied", "#DCEBFA", "#5AA0E6", 0.9),
    "neutral": LevelStyle("neutral", "#FFF1CC", "#F2B400", 0.0, eyes="dashes"),
    "not_satisfied": LevelStyle("not_satisfied", "#FADCD9", "#D64532", -0.7, brows=True),
    "very_dissatisfied": LevelStyle("very_dissatisfied", "#F2D7E3", "#B0285A", -1.0, open_mouth=True,
                                    eyes="squeezed"),
}
_TONES = {
    3: ("very_satisfied", "satisfied", "not_satisfied"),
    4: ("very_satisfied", "satisfied", "neutral", "not_satisfied"),
    5: ("very_satisfied", "satisfied", "neutral", "not_satisfied", "very_dissatisfied"),
}


def level_style(score: int, scale: int) -> LevelStyle:
    """Style of ``score`` (1 = worst) on a ``scale``-level scale."""
    return LEVEL_STYLES[_TONES[scale][scale - score]]



@cache
def words(language: str) -> dict[str, Any]:
    """``{"levels": {"3": [...], ...}, "reasons": {"codes": {...}}}`` of one language (vi, en)."""
    if language not in LANGUAGES:
        raise ValueError(f"no rating-scale words for language {language!r}; have {LANGUAGES}")
    data = tomllib.loads((_DIR / f"{language}.toml").read_text(encoding="utf-8"))
    for scale in ("3", "4", "5"):
        if len(data["levels"][scale]) != int(scale):
            raise ValueError(f"{language}.toml: levels.{scale} must have {scale} labels")
    return data


def levels(language: str, scale: int) -> list[str]:
    """Labels best first (no-break spaces inside a word kept: a renderer cuts only between words)."""
    return list(words(language)["levels"][str(scale)])


def reason_label(language: str, code: str) -> str:
    """A reason's label; a code configured but not translated still reads ("new_code" -> "new code")."""
    return str(words(language)["reasons"]["codes"].get(code, code.replace("_", " ")))


REASON_CODES: tuple[str, ...] = tuple(words("vi")["reasons"]["codes"])
