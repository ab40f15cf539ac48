"""A level's face as inline SVG, from the geometry the terminal draws (broker/ratingscale/faces.py)."""

from __future__ import annotations

from functools import cache

from broker.ratingscale import level_style
from broker.ratingscale.faces import face_shape

SIZE = 48  # viewBox units; the page scales it with CSS
_INK = "#111111"


def _pts(flat: tuple[float, ...]) -> str:
    # y-up geometry -> SVG's y-down
    return " ".join(f"{flat[i]:.1f},{SIZE - flat[i + 1]:.1f}" for i in range(0, len(flat), 2))


@cache
def face_svg(score: int, scale: int) -> str:
    """Decorative (aria-hidden): the label next to it says the level in words."""
    style = level_style(score, scale)
    c = SIZE / 2
    r = c - 2
    f = face_shape(style, c, c, r)
    parts = [f'<svg class="face" viewBox="0 0 {SIZE} {SIZE}" aria-hidden="true" focusable="false">',
             f'<circle cx="{c}" cy="{c}" r="{r:.1f}" fill="{style.face}" stroke="{_INK}" '
             f'stroke-width="{f.outline_width:.1f}"/>']
    for x, y, w, h in f.eye_dots:
        parts.append(f'<ellipse cx="{x + w / 2:.1f}" cy="{SIZE - (y + h / 2):.1f}" rx="{w / 2:.1f}" '
                     f'ry="{h / 2:.1f}" fill="{_INK}"/>')
    lines = [(e, f.eye_width) for e in f.eye_lines] + [(b, f.brow_width) for b in f.brows]
    if f.mouth_line:
        lines.append((f.mouth_line, f.mouth_width))
    for pts, width in lines:
        parts.append(f'<polyline points="{_pts(pts)}" fill="none" stroke="{_INK}" stroke-width="{width:.1f}" '
                     'stroke-linecap="round" stroke-linejoin="round"/>')
    if f.mouth_outline:
        flat = tuple(v for p in f.mouth_outline for v in p)
        parts.append(f'<polygon points="{_pts(flat)}" fill="{_INK}"/>')
    parts.append("</svg>")
    return "".join(parts)
