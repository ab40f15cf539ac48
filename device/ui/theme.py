"""Colours and level styles. Kivy-free, so the contrast rule is unit-tested without a window.

Every text/background pair the UI uses is listed in :data:`TEXT_PAIRS` and must
reach WCAG contrast 7:1 (AAA). Each level is colour + face + label, never
colour alone: the face's mouth curves from a wide smile (best) to a frown
(worst), so it reads the same to a colour-blind citizen.
"""

from __future__ import annotations

# the level styles (colours and faces) are the rating scale both surfaces draw: the web page too
from broker.ratingscale import LEVEL_STYLES, LevelStyle, level_style

__all__ = ["LevelStyle", "level_style"]

INK = "#111111"        # all body text
PAPER = "#FAFAF7"      # screen background
MUTED_INK = "#2B2B2B"  # secondary text (still >= 7:1 on PAPER)
PRIMARY = "#0D47A1"    # "Gửi", chosen chips: white text on it
ON_PRIMARY = "#FFFFFF"
SECONDARY = "#E4E4E4"  # "Bỏ qua", language toggle
OOS_BG = "#ECEFF1"
CHIP_BG = "#FFFFFF"
OUTLINE = "#4A4A4A"
# Edge of the grey buttons ("Bỏ qua", "Chọn lại", the language toggle): their fill is only
# 1.22:1 against the page, so the control is recognised by this edge (WCAG 1.4.11, >= 3:1).
EDGE = OUTLINE


def rgba(hex_colour: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, alpha)


def darker(hex_colour: str, factor: float = 0.85) -> tuple[float, float, float, float]:
    """Pressed-state colour: immediate touch feedback without an animation."""
    r, g, b, a = rgba(hex_colour)
    return (r * factor, g * factor, b * factor, a)


def _luminance(hex_colour: str) -> float:
    def ch(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b, _ = rgba(hex_colour)
    return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b)


def contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio."""
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


TEXT_PAIRS: list[tuple[str, str, str]] = [
    ("body text", INK, PAPER),
    ("secondary text", MUTED_INK, PAPER),
    ("primary button", ON_PRIMARY, PRIMARY),
    ("secondary button", INK, SECONDARY),
    ("out of service", INK, OOS_BG),
    ("chip", INK, CHIP_BG),
    ("chosen chip", ON_PRIMARY, PRIMARY),
    *((f"level {s.tone}", INK, s.tile) for s in LEVEL_STYLES.values()),
]

# Non-text contrast (WCAG 2.1 SC 1.4.11, >= 3:1): the edge that identifies each control
# against what surrounds it. The pages a control sits on: PAPER, and OOS_BG for the
# language toggle on the out-of-service screen.
PAGES = (PAPER, OOS_BG)
EDGE_PAIRS: list[tuple[str, str, str]] = [
    *((f"secondary button edge on {page}", EDGE, page) for page in PAGES),
    ("rating tile edge", OUTLINE, PAPER),
    ("reason chip edge", OUTLINE, PAPER),
    ("primary button fill", PRIMARY, PAPER),
]
