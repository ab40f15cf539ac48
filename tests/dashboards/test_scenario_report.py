"""Every figure of the weekly scorecard (rows, CSV, PDF text) equals the field scenario's hand count.

For each centre and ISO week of the scenario: the computed rows (dashboards.scorecard),
every CSV column, and the PDF as text (``pdftotext -layout``): names from the registry,
the week's dates, n, ratio, response rate, class counts, reasons by class and the
shared rank (1, 1, 3) with the minimum-sample rule.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.scorecard import IsoWeek, weekly_scorecard
from hailong.cli import main
from tests.support.tally import Tally

from .conftest import ScenarioWorld
from .handcount import HandCount
from .scenario import CENTRES, FIRST, PROVINCES
from .seed import ms
from .truth import shared_ranks

WEEKS = ("2026-W45", "2026-W46", "2026-W47")
WEEKS_BACK = 3
MIN_SAMPLE = 10
CENTRE_NAMES = {"c-tt": "Trung tâm Phục vụ hành chính công tỉnh", "c-pd": "Bộ phận một cửa Phú Đông",
                "c-hl": "Trung tâm Hải Lăng"}
NAMES = {"o-lan": "Nguyễn Thị Lan", "o-binh": "Trần Văn Bình", "o-cuong": "Lê Văn Cường", "o-dao": "Phạm Thị Đào",
         "o-em": "Hoàng Văn Em", "o-gia": "Võ Thị Gia", "o-hoa": "Đặng Thị Hoa", "o-khai": "Bùi Văn Khải"}
CLASSES = ("very_satisfied", "satisfied", "not_satisfied")


def _enough(cells: Counter[str]) -> None:
    assert cells["rows"] > 200 and cells["csv"] > 200 and cells["pdf"] > 200, "fewer than 200 cells of a kind"


# three families (rows, CSV, PDF) per centre-week, checked at the session's end (tests/support/tally.py)
REPORT = Tally("weekly report", 3 * len(CENTRES) * len(WEEKS), _enough)
CELLS = REPORT.counts
SLASH = "/"  # the report prints "1 / 3"; pdftotext drops the narrow spaces around the slash


@dataclass(frozen=True)
class Want:
    counts: dict[str, int]
    rated: int
    served: int
    ratio: float | None
    response: float | None
    rank: int | None
    reasons: dict[str, int]
    reasons_satisfied: dict[str, int]


def week_ms(week: str) -> tuple[int, int]:
    w = IsoWeek.parse(week)
    monday = date.fromisocalendar(w.year, w.week, 1)
    start = FIRST + timedelta(days=(monday - FIRST.date()).days)
    return ms(start), ms(start + timedelta(days=7)) - 1


def hand(hc: HandCount, centre: str, week: str) -> dict[str, Want]:
    start, end = week_ms(week)
    sel = {"centre": [centre]}
    out = {}
    for (officer,), r in hc.ratios(start, end, sel, ("officer",)).items():
        mine = {"centre": [centre], "officer": [officer]}
        out[officer] = Want({c: hc.by_class(start, end, mine).get(c, 0) for c in CLASSES}, r.rated, r.served, r.ratio,
                            r.response, None, hc.reasons(start, end, mine), hc.reasons(start, end, mine, False))
    ranks = shared_ranks({o: w.ratio for o, w in out.items() if w.rated >= MIN_SAMPLE and w.ratio is not None})
    return {o: Want(**{**w.__dict__, "rank": ranks.get(o)}) for o, w in out.items()}


def pct(v: float | None) -> str:
    """How the report must print a ratio: one decimal, comma, "—" when there is none."""
    return "—" if v is None else f"{v * 100:.1f}".replace(".", ",") + " %"


def write_registry(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "centres.toml").write_text("".join(
        f'[centre.{c}]\nname = "{n}"\nprovince = "{PROVINCES[c]}"\n'
        + "".join(f'[centre.{c}.counter.q{i + 1}]\nlabel = "Quầy {i + 1}"\n' for i in range(len(CENTRES[c])))
        for c, n in CENTRE_NAMES.items()), encoding="utf-8")
    (root / "devices.toml").write_text("", encoding="utf-8")
    (root / "officers.toml").write_text("".join(f'[officer.{o}]\nname = "{NAMES[o]}"\ncentre = "{c}"\n'
                                                for c, officers in CENTRES.items() for o in officers), encoding="utf-8")
    return root


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_scorecard_rows_equal_the_hand_count(scenario_world: ScenarioWorld, centre: str, week: str) -> None:
    hc = HandCount.of(scenario_world.scenario)
    want = hand(hc, centre, week)
    card = weekly_scorecard(scenario_world.db, centre, IsoWeek.parse(week), scenario_world.settings.timezone,
                            MIN_SAMPLE, WEEKS_BACK, NAMES, CENTRE_NAMES[centre])
    assert {o.officer for o in card.officers} == set(want)
    for o in card.officers:
        w = want[o.officer]
        got = (o.counts, o.rated, o.served, o.ratio, o.response_rate, o.rank, dict(o.reasons),
               dict(o.reasons_satisfied), o.name)
        assert got == (w.counts, w.rated, w.served, w.ratio, w.response, w.rank, w.reasons, w.reasons_satisfied,
                       NAMES[o.officer]), o.officer
        CELLS["rows"] += 8 + len(CLASSES)
        weeks = [IsoWeek.parse(week).shifted(-i) for i in range(WEEKS_BACK, -1, -1)]
        for (label, ratio, n), iso in zip(o.trend, weeks, strict=True):
            start, end = week_ms(str(iso)) if str(iso) in WEEKS else (0, 0)
            r = hc.ratios(start, end, {"centre": [centre], "officer": [o.officer]}).get(()) if end else None
            assert (label, ratio, n) == (str(iso), r.ratio if r else None, r.rated if r else 0), (o.officer, iso)
            CELLS["rows"] += 2
    whole = hc.ratios(*week_ms(week), {"centre": [centre]}).get(())
    assert whole is not None
    assert (card.centre_rated, card.centre_ratio, card.centre_served) == (whole.rated, whole.ratio, whole.served)
    assert card.ranked == sum(w.rank is not None for w in want.values())
    CELLS["rows"] += 4
    assert [o.rank for o in card.officers if o.rank] == sorted(o.rank for o in card.officers if o.rank)
    REPORT.fed()


@pytest.fixture(scope="module")
def reports(scenario_world: ScenarioWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str],
                                                                                               tuple[Path, Path]]:
    out = tmp_path_factory.mktemp("scenario-reports")
    cfg = out / "settings.toml"
    cfg.write_text(f"min_sample = {MIN_SAMPLE}\n", encoding="utf-8")
    registry = write_registry(out / "fleet")
    made = {}
    for centre in sorted(CENTRES):
        for week in WEEKS:
            r = CliRunner().invoke(main, [
                "report", "weekly", "--centre", centre, "--week", week, "--out", str(out), "--config", str(cfg),
                "--influx-url", scenario_world.db.url, "--db", scenario_world.db.database, "--registry",
                str(registry), "--weeks-back", str(WEEKS_BACK)])
            assert r.exit_code == 0, r.output
            pdf, csv_path = (Path(p) for p in r.output.split())
            made[(centre, week)] = (pdf, csv_path)
    return made


def coded(text: str) -> dict[str, int]:
    return {c: int(n) for c, n in (item.split(":") for item in text.split(";") if item)}


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_csv_equals_the_hand_count(scenario_world: ScenarioWorld, reports: dict[tuple[str, str], tuple[Path, Path]],
                                   centre: str, week: str) -> None:
    want = hand(HandCount.of(scenario_world.scenario), centre, week)
    monday, sunday = IsoWeek.parse(week).dates()
    with reports[(centre, week)][1].open(encoding="utf-8") as fh:
        rows = {r["officer"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(want)
    for o, w in want.items():
        r = rows[o]
        assert (r["week"], r["week_start"], r["week_end"], r["centre"], r["centre_name"], r["officer_name"]) == (
            week, monday.isoformat(), sunday.isoformat(), centre, CENTRE_NAMES[centre], NAMES[o])
        assert [int(r[c]) for c in CLASSES] == [w.counts[c] for c in CLASSES]
        assert (int(r["rated"]), int(r["served"])) == (w.rated, w.served)
        assert r["ratio"] == ("" if w.ratio is None else f"{w.ratio:.6f}"), (o, r["ratio"])
        assert r["response_rate"] == ("" if w.response is None else f"{w.response:.6f}")
        assert r["rank"] == ("" if w.rank is None else str(w.rank))
        assert coded(r["reasons_not_satisfied"]) == w.reasons and coded(r["reasons_satisfied"]) == w.reasons_satisfied
        # every rating of the field scenario was given at the counter
        assert (r["rated_counter"], r["rated_web"], r["web_share"], r["response_rate_counter"],
                r["response_rate_web"]) == (str(w.rated), "0", "" if not w.rated else f"{0:.6f}", r["response_rate"],
                                            "" if not w.served else f"{0:.6f}")
        CELLS["csv"] += 22
    REPORT.fed()


def pdf_pages(path: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout
    return [p for p in text.split("\f") if p.strip()]


def cells_of(page: str) -> dict[str, str]:
    """Two-column rows of an officer page: label -> value (layout text, columns split by 2+ spaces)."""
    out = {}
    for line in page.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_pdf_text_equals_the_hand_count(scenario_world: ScenarioWorld,
                                        reports: dict[tuple[str, str], tuple[Path, Path]], centre: str,
                                        week: str) -> None:
    hc = HandCount.of(scenario_world.scenario)
    want = hand(hc, centre, week)
    ranked = sum(w.rank is not None for w in want.values())
    whole = hc.ratios(*week_ms(week), {"centre": [centre]})[()]
    monday, sunday = IsoWeek.parse(week).dates()
    label = f"{week} ({monday:%d/%m/%Y} – {sunday:%d/%m/%Y})"
    pages = pdf_pages(reports[(centre, week)][0])
    assert len(pages) == 1 + len(want), "a summary page, then one page per officer"
    summary = pages[0]
    assert f"Tổng hợp hài lòng tuần {label}" in summary and f"Trung tâm: {CENTRE_NAMES[centre]}" in summary
    assert (f"Toàn trung tâm: n = {whole.rated}, tỷ lệ hài lòng {pct(whole.ratio)}, tỷ lệ phản hồi "
            f"{pct(whole.response)}") in " ".join(summary.split())
    CELLS["pdf"] += 3

    def rank_text(w: Want) -> str:
        return f"{w.rank}{SLASH}{ranked}" if w.rank is not None else f"Chưa xếp hạng (n < {MIN_SAMPLE})"

    order = sorted(want, key=lambda o: (want[o].rank is None, want[o].rank or 0, NAMES[o], o))
    ranking, channels = summary.split("Theo kênh đánh giá (by channel)")
    lines = [line for line in ranking.splitlines() if any(NAMES[o] in line for o in want)]
    assert len(lines) == len(want)
    # the channel table: the field scenario's ratings are all given at the counter (test_channels.py has web ones)
    assert f": tại quầy {whole.rated}, qua web 0" in channels
    assert "không có đánh giá qua web" in channels
    per = {re.split(r"\s{2,}", line.strip())[0]: re.split(r"\s{2,}", line.strip())[1:]
           for line in channels.splitlines() if any(NAMES[o] in line for o in want)}
    assert per == {NAMES[o]: [str(w.rated), "0", "0,0 %" if w.rated else "—", pct(w.response),
                              "0,0 %" if w.served else "—"] for o, w in want.items()}
    CELLS["pdf"] += 5 * len(per)
    for line, o in zip(lines, order, strict=True):
        w = want[o]
        summary_rank = f"{w.rank}{SLASH}{ranked}" if w.rank is not None else f"— (n < {MIN_SAMPLE})"
        assert re.split(r"\s{2,}", line.strip()) == [summary_rank, NAMES[o], str(w.rated), pct(w.ratio),
                                                     pct(w.response)], (line, o)
        CELLS["pdf"] += 5
    labels = scenario_world.settings.reasons
    for page in pages[1:]:
        assert f"Phiếu điểm hài lòng tuần {label}" in page
        o = next(o for o in want if f"Cán bộ: {NAMES[o]}" in page)
        assert f"Trung tâm: {CENTRE_NAMES[centre]} · Cán bộ: {NAMES[o]}" in page
        w, got = want[o], cells_of(page)
        expected = {"Rất hài lòng": str(w.counts["very_satisfied"]),
                    "Hài lòng (gồm Bình thường)": str(w.counts["satisfied"]),
                    "Không hài lòng": str(w.counts["not_satisfied"]), "Số vé được đánh giá (n)": str(w.rated),
                    "Số vé đã phục vụ": str(w.served), "Tỷ lệ hài lòng": pct(w.ratio),
                    "Tỷ lệ phản hồi": pct(w.response), "Tỷ lệ hài lòng của trung tâm": pct(whole.ratio),
                    "Xếp hạng trong trung tâm": rank_text(w),
                    "Số vé đánh giá tại quầy (counter)": str(w.rated), "Số vé đánh giá qua web (web)": "0",
                    "Tỷ lệ đánh giá qua web (web share)": "0,0 %" if w.rated else "—",
                    "Tỷ lệ phản hồi tại quầy (counter)": pct(w.response),
                    "Tỷ lệ phản hồi qua web (web)": "0,0 %" if w.served else "—"}
        assert {k: got.get(k) for k in expected} == expected, o
        not_sat, sat = page.split("Lý do — các lượt Không hài lòng")[1].split("Lý do kèm lượt hài lòng")
        for section, counts in ((not_sat, w.reasons), (sat, w.reasons_satisfied)):
            shown = dict(re.findall(r"• (.+): (\d+)", section))
            assert {k: int(v) for k, v in shown.items()} == {labels[c]: n for c, n in counts.items()}, o
            assert ("Không có" in section) == (not counts)
        CELLS["pdf"] += len(expected) + len(w.reasons) + len(w.reasons_satisfied) + 2
        assert "NaN" not in page and "nan" not in page
    REPORT.fed()
