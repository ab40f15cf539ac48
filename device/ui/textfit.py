"""Line breaking and font fitting for labels that must never break inside a word. Kivy-free.

Vietnamese writes a space between every syllable, so a word such as "Bình thường"
or "hài lòng" contains a space. Kivy wraps at any space, which is how the 5-level
tile came to read "Bình / thường". The catalogues therefore join the syllables of
one word with a no-break space (U+00A0); here a label is cut only at ordinary
spaces, into at most ``max_lines`` balanced lines, at the largest font that fits
the box. Kivy then renders the result with explicit newlines and no wrapping of
its own, so what is measured here is what the citizen sees.

Measuring is injected (``measure(text, font_size) -> width px``), so the rules are
unit-tested without a window; the widget passes Kivy's own text measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations, pairwise

NBSP = "\u00a0"
Measure = Callable[[str, float], float]
LINE_HEIGHT = 1.25  # line box as a multiple of the font size (Roboto's ascent + descent, with room)


@dataclass(frozen=True)
class Fit:
    """How a label is drawn: its font size and its lines (joined by newlines for Kivy)."""

    font_size: float
    lines: tuple[str, ...]
    fits: bool  # False: even the smallest allowed font overflows the box (the caller may log it)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def units(text: str) -> list[str]:
    """The pieces a line may break between: runs separated by ordinary spaces (NBSP joins)."""
    return [u for u in text.split(" ") if u]


def _splits(parts: list[str], n: int) -> Iterator[tuple[str, ...]]:
    """Every way to cut ``parts`` into ``n`` non-empty consecutive lines."""
    for cuts in combinations(range(1, len(parts)), n - 1):
        bounds = (0, *cuts, len(parts))
        yield tuple(" ".join(parts[a:b]) for a, b in pairwise(bounds))


def _largest_font(lines: tuple[str, ...], box_w: float, box_h: float, max_font: float, min_font: float,
                  measure: Measure) -> float:
    """Largest whole font size in [min_font, max_font] at which ``lines`` fit the box, or 0."""
    widest = max(measure(line, max_font) for line in lines)
    font = float(int(max_font if widest <= 0 else min(max_font, max_font * box_w / widest)))
    font = min(font, float(int(box_h / (LINE_HEIGHT * len(lines)))))
    # glyph widths do not scale exactly linearly (hinting): confirm, stepping down
    while font >= min_font and max(measure(line, font) for line in lines) > box_w:
        font -= 1
    return font if font >= min_font else 0.0


def best_at_lines(text: str, n: int, box_w: float, box_h: float, max_font: float, min_font: float,
                  measure: Measure) -> tuple[float, tuple[str, ...]]:
    """The ``n``-line cut with the largest font; ties go to the most balanced cut (no orphan word)."""
    best: tuple[float, float, tuple[str, ...]] = (0.0, 0.0, ())
    for lines in _splits(units(text), n):
        font = _largest_font(lines, box_w, box_h, max_font, min_font, measure)
        if font <= 0:
            continue
        widths = [measure(line, font) for line in lines]
        balance = -(max(widths) - min(widths))
        if (font, balance) > best[:2]:
            best = (font, balance, lines)
    return best[0], best[2]


def fit_text(text: str, box_w: float, box_h: float, max_font: float, min_font: float, max_lines: int,
             measure: Measure, one_line_down_to: float = 1.0) -> Fit:
    """Fewest lines whose font stays >= ``one_line_down_to`` x ``max_font``; else the largest font.

    ``one_line_down_to`` < 1 prefers shrinking a little over wrapping (a prompt on one line);
    1.0 takes the largest font (a tile label at its full size on two lines).
    """
    parts = units(text)
    if not parts or box_w <= 0 or box_h <= 0:
        return Fit(max_font, (text,), True)
    candidates: list[tuple[float, tuple[str, ...]]] = []
    for n in range(1, min(max_lines, len(parts)) + 1):
        font, lines = best_at_lines(text, n, box_w, box_h, max_font, min_font, measure)
        if font > 0:
            if font >= one_line_down_to * max_font:
                return Fit(font, lines, True)
            candidates.append((font, lines))
    if candidates:
        font, lines = max(candidates, key=lambda c: c[0])
        return Fit(font, lines, True)
    # nothing fits even at min_font: the most balanced cut at min_font, flagged
    n = min(max_lines, len(parts))
    lines = min(_splits(parts, n), key=lambda ls: max(measure(line, min_font) for line in ls))
    return Fit(min_font, lines, False)
