"""The geometry of a level's face, for every renderer: Kivy on the terminal, SVG on the web page.

Coordinates are y-up (Kivy's): a renderer with y-down (SVG) flips them. Everything is a function
of the level's style (broker/ratingscale: eyes, brows, mouth curve, open mouth), the centre and
the radius, so the terminal and the web page draw the same faces.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import LevelStyle


@dataclass(frozen=True, slots=True)
class FaceShape:
    eye_dots: tuple[tuple[float, float, float, float], ...]  # round eyes: ellipse x, y (lower left), w, h
    eye_lines: tuple[tuple[float, ...], ...]  # line eyes: flat x0, y0, x1, y1, ... per eye
    eye_width: float
    brows: tuple[tuple[float, ...], ...]  # sad brows, inner ends raised (empty without)
    brow_width: float
    mouth_line: tuple[float, ...]  # a bent line (empty when open)
    mouth_outline: tuple[tuple[float, float], ...]  # open mouth: a closed outline to fill (empty when a line)
    mouth_width: float
    outline_width: float


def steps(half: float, n: int = 12) -> list[float]:
    return [-half + 2 * half * i / n for i in range(n + 1)]


def _arc(cx: float, cy: float, half: float, rise: float) -> list[float]:
    """An upturned arc (a closed, smiling eye) centred at cx, cy."""
    return [v for x in steps(half, 8) for v in (cx + x, cy + rise * (1 - (x / half) ** 2))]


def eye(kind: str, cx: float, cy: float, r: float, side: int) -> list[float]:
    """Line points of one eye (``side`` -1 left, +1 right); [] for round dots (drawn as ellipses)."""
    ex = cx + side * 0.26 * r
    if kind == "arcs":      # closed, smiling
        return _arc(ex, cy + 0.2 * r, 0.13 * r, 0.12 * r)
    if kind == "dashes":    # flat, neither pleased nor displeased
        return [ex - 0.12 * r, cy + 0.14 * r, ex + 0.12 * r, cy + 0.14 * r]
    if kind == "squeezed":  # shut tight: > on the left, < on the right
        tip, back = ex - side * 0.1 * r, ex + side * 0.12 * r
        return [back, cy + 0.34 * r, tip, cy + 0.22 * r, back, cy + 0.1 * r]
    return []


def brows(cx: float, cy: float, r: float) -> list[list[float]]:
    return [[cx - 0.48 * r, cy + 0.42 * r, cx - 0.14 * r, cy + 0.6 * r],
            [cx + 0.48 * r, cy + 0.42 * r, cx + 0.14 * r, cy + 0.6 * r]]


def open_mouth(curve: float, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The outline of an open mouth: a laugh (curve > 0) or a wail."""
    laugh = curve > 0
    half = 0.56 * r if laugh else 0.5 * r
    if laugh:   # flat top, deep round bottom: a D lying on its back
        top, bottom, base = -0.02 * r, -0.56 * r, cy - 0.08 * r
    else:       # arched top, flat bottom: an open, downturned mouth
        top, bottom, base = 0.34 * r, 0.04 * r, cy - 0.56 * r
    upper = [(cx + x, base + top * (1 - (x / half) ** 2)) for x in steps(half)]
    lower = [(cx + x, base + bottom * (1 - (x / half) ** 2)) for x in reversed(steps(half))]
    return upper + lower[1:-1]


def mouth_line(curve: float, cx: float, cy: float, r: float) -> list[float]:
    half = 0.45 * r if curve else 0.5 * r  # a flat mouth a little wider: it differs from a smile
    pts: list[float] = []
    for x in steps(half):
        # corners rise above the middle for a smile, drop below it for a frown
        y = -0.3 * r + curve * 0.22 * r * ((x / half) ** 2 - 0.5)
        pts += [cx + x, cy + y]
    return pts


def face_shape(style: LevelStyle, cx: float, cy: float, r: float) -> FaceShape:
    dots = (((cx - 0.36 * r, cy + 0.12 * r, 0.2 * r, 0.24 * r), (cx + 0.16 * r, cy + 0.12 * r, 0.2 * r, 0.24 * r))
            if style.eyes == "dots" else ())
    lines = tuple(tuple(eye(style.eyes, cx, cy, r, side)) for side in (-1, 1)) if not dots else ()
    return FaceShape(
        eye_dots=dots, eye_lines=lines, eye_width=max(2.0, r * (0.1 if style.eyes == "dashes" else 0.07)),
        brows=tuple(tuple(b) for b in brows(cx, cy, r)) if style.brows else (), brow_width=max(2.0, r * 0.06),
        mouth_line=() if style.open_mouth else tuple(mouth_line(style.curve, cx, cy, r)),
        mouth_outline=tuple(open_mouth(style.curve, cx, cy, r)) if style.open_mouth else (),
        mouth_width=max(2.0, r * 0.07), outline_width=max(1.5, r * 0.05))
