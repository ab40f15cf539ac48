"""UI rules that need no window: text contrast >= 7:1, complete catalogues, correct Vietnamese labels."""

from __future__ import annotations

import pytest

from broker.contract import SatisfactionClass, satisfaction_class
from device.i18n import LANGUAGES, load_catalogue
from device.ui.theme import TEXT_PAIRS, contrast, level_style


@pytest.mark.parametrize(("what", "fg", "bg"), TEXT_PAIRS, ids=[p[0] for p in TEXT_PAIRS])
def test_every_text_colour_pair_reaches_7_to_1(what: str, fg: str, bg: str) -> None:
    assert contrast(fg, bg) >= 7.0, what


def test_contrast_formula_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)


def test_vietnamese_labels_have_full_diacritics_best_first() -> None:
    vi = load_catalogue("vi")
    assert vi.levels(4) == ["Rất hài lòng", "Hài lòng", "Bình thường", "Không hài lòng"]
    assert vi.levels(3) == ["Rất hài lòng", "Hài lòng", "Không hài lòng"]
    assert vi.levels(5)[-1] == "Rất không hài lòng"
    assert vi.text("thanks.title") == "Cảm ơn Quý khách!"
    assert vi.text("idle.serving", ticket="A-1024") == "Đang phục vụ số A-1024"
    assert vi.text("reasons.send") == "Gửi" and vi.text("reasons.skip") == "Bỏ qua"


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
        for s in range(1, scale + 1):
            if satisfaction_class(s, scale) is SatisfactionClass.NOT_SATISFIED:
                assert level_style(s, scale).curve < 0
