"""Line breaking of rating labels and the prompt: only between words, balanced, never a lone last word.

The measure here is a fixed-advance font (every character 0.5 x font size wide), so the
expected cuts can be worked out by hand; the UI test checks the same rules with Kivy's
real font at 800x480 and 1280x720.
"""

from __future__ import annotations

from device.ui.textfit import NBSP, fit_text, units


def mono(text: str, font: float) -> float:
    return len(text) * font * 0.5


def test_a_word_joined_by_nbsp_is_never_cut_and_shrinks_instead() -> None:
    label = f"Bình{NBSP}thường"  # 11 characters: 132 px at 24
    fit = fit_text(label, 120, 80, 24, 12, 2, mono)
    assert fit.lines == (label,) and fit.fits
    assert fit.font_size == 21  # 11 x 21 x 0.5 = 115.5 <= 120; 22 would be 121
    # with ordinary spaces the same text would have been cut in two at full size
    assert fit_text("Bình thường", 120, 80, 24, 12, 2, mono).lines == ("Bình", "thường")


def test_long_label_cuts_between_words_into_balanced_lines() -> None:
    label = f"Rất không hài{NBSP}lòng"
    fit = fit_text(label, 100, 80, 24, 12, 2, mono)
    # "Rất không" (9 characters) sets the size: 9 x 22 x 0.5 = 99 <= 100; one line would need 11 px
    assert fit.lines == ("Rất không", f"hài{NBSP}lòng") and fit.font_size == 22
    assert all(mono(line, fit.font_size) <= 100 for line in fit.lines)


def test_prompt_prefers_one_slightly_smaller_line_over_an_orphan() -> None:
    title = f"Quý{NBSP}khách có hài{NBSP}lòng với sự{NBSP}phục{NBSP}vụ của chúng{NBSP}tôi không?"
    natural = len(title) * 30 * 0.5  # 855 px at 30
    one = fit_text(title, 800, 48, 30, 18, 2, mono, one_line_down_to=0.85)
    assert one.lines == (title,) and 0.85 * 30 <= one.font_size < 30 < natural / 800 * 30
    # too narrow for one line at 85 %: two lines, balanced, so "không?" never stands alone
    two = fit_text(title, 520, 80, 30, 14, 2, mono, one_line_down_to=0.85)
    assert len(two.lines) == 2 and len(units(two.lines[-1])) >= 3, two.lines
    widths = [mono(line, two.font_size) for line in two.lines]
    assert max(widths) - min(widths) < 0.25 * max(widths)


def test_the_box_height_bounds_the_font_and_overflow_is_flagged() -> None:
    fit = fit_text("Hài lòng", 400, 20, 24, 12, 2, mono)
    assert fit.font_size == 16 and fit.lines == ("Hài lòng",)  # 16 x 1.25 = 20 px line
    tight = fit_text(f"Rất{NBSP}không{NBSP}hài{NBSP}lòng", 40, 80, 24, 12, 2, mono)
    assert not tight.fits and tight.font_size == 12
