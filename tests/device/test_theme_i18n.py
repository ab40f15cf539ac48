"""UI rules that need no window: text contrast >= 7:1, control edges >= 3:1, complete catalogues,
correct Vietnamese labels that never break inside a word."""

from __future__ import annotations

import pytest

from broker.contract import SatisfactionClass, satisfaction_class
from device.i18n import LANGUAGES, load_catalogue
from device.ui.textfit import NBSP, units
from device.ui.theme import EDGE, EDGE_PAIRS, PAPER, SECONDARY, TEXT_PAIRS, contrast, level_style


@pytest.mark.parametrize(("what", "fg", "bg"), TEXT_PAIRS, ids=[p[0] for p in TEXT_PAIRS])
def test_every_text_colour_pair_reaches_7_to_1(what: str, fg: str, bg: str) -> None:
    assert contrast(fg, bg) >= 7.0, what


@pytest.mark.parametrize(("what", "edge", "page"), EDGE_PAIRS, ids=[p[0] for p in EDGE_PAIRS])
def test_every_control_edge_reaches_3_to_1_against_its_page(what: str, edge: str, page: str) -> None:
    """WCAG 2.1 SC 1.4.11 (non-text contrast): a control is found by an edge of >= 3:1."""
    assert contrast(edge, page) >= 3.0, f"{what}: {contrast(edge, page):.2f}:1"


def test_grey_buttons_need_their_edge() -> None:
    # why "Bỏ qua" and the language toggle have an edge: their fill alone is far below 3:1
    assert contrast(SECONDARY, PAPER) < 1.5
    assert contrast(EDGE, PAPER) >= 3.0 and contrast(EDGE, SECONDARY) >= 3.0


def test_contrast_formula_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)


def test_vietnamese_labels_have_full_diacritics_best_first() -> None:
    vi = load_catalogue("vi")

    def plain(labels: list[str]) -> list[str]:
        return [label.replace(NBSP, " ") for label in labels]

    assert plain(vi.levels(4)) == ["Rất hài lòng", "Hài lòng", "Bình thường", "Không hài lòng"]
    assert plain(vi.levels(3)) == ["Rất hài lòng", "Hài lòng", "Không hài lòng"]
    assert plain(vi.levels(5))[-1] == "Rất không hài lòng"
    # the two syllables of one word stay together ("Bình / thường" was a broken word)
    assert units(vi.levels(5)[2]) == ["Bình\u00a0thường"]
    assert units(vi.levels(5)[-1]) == ["Rất", "không", "hài\u00a0lòng"]
    assert vi.text("prompt.title").replace(NBSP, " ") == "Quý khách có hài lòng với sự phục vụ của chúng tôi không?"
    assert vi.text("thanks.title") == "Cảm ơn Quý khách!"
    assert vi.text("idle.serving", ticket="A-1024") == "Đang phục vụ số A-1024"
    assert vi.text("reasons.send") == "Gửi" and vi.text("reasons.skip") == "Bỏ qua"
    assert vi.text("reasons.back") == "Chọn lại" and vi.text("countdown", s=12) == "Còn 12 giây"


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogues_complete_for_every_scale(language: str) -> None:
    cat = load_catalogue(language)
    for scale in (3, 4, 5):
        assert len(cat.levels(scale)) == scale
    for code in ("thai_do", "thoi_gian_cho", "huong_dan", "thu_tuc", "di_lai", "co_so_vat_chat"):
        assert cat.reason(code) != code
    assert cat.reason("new_code") == "new code"  # a reason added by config but not translated still reads


def test_face_and_colour_follow_the_legal_class() -> None:
    for scale in (3, 4, 5):
        curves = [level_style(s, scale).curve for s in range(1, scale + 1)]
        assert curves == sorted(curves) and len(set(curves)) == scale  # worst frowns most, best smiles most
        assert level_style(scale, scale).tone == "very_satisfied"
        # the best level differs from the next in shape (open laugh vs a line smile), not in colour alone
        assert level_style(scale, scale).open_mouth and not level_style(scale - 1, scale).open_mouth
        for s in range(1, scale + 1):
            if satisfaction_class(s, scale) is SatisfactionClass.NOT_SATISFIED:
                assert level_style(s, scale).curve < 0


def test_neighbouring_faces_differ_in_eyes_and_mouth_at_every_scale() -> None:
    """The shape half of the greyscale rule (test_ui.py measures the pixels): no two neighbours share
    both their eyes and their kind of mouth, and their fills differ in grey by >= 20 of 255."""
    def luma(hex_colour: str) -> float:  # ITU-R 601, what a greyscale conversion keeps
        h = hex_colour.lstrip("#")
        r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
        return 0.299 * r + 0.587 * g + 0.114 * b

    for scale in (3, 4, 5):
        for better in range(scale, 1, -1):
            a, b = level_style(better, scale), level_style(better - 1, scale)
            assert a.eyes != b.eyes or a.brows != b.brows, (scale, better, a, b)
            assert (a.open_mouth, a.curve > 0, a.curve < 0) != (b.open_mouth, b.curve > 0, b.curve < 0), (a, b)
            assert abs(luma(a.face) - luma(b.face)) >= 20, (scale, better, a.face, b.face)
