"""Weekly scorecard: CSV and PDF numbers equal the seed's; Vietnamese survives into the PDF."""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.report import pct
from dashboards.scorecard import IsoWeek, weekly_scorecard
from hailong.cli import main

from .conftest import Seeded
from .seed import FIRST_MONDAY, NEW_OFFICER, Selection, in_range, ms
from .truth import ratings, ratios

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "reports"
WEEK = IsoWeek(2026, 47)
MIN_SAMPLE = 15


def week_range(weeks_after_first: int) -> tuple[int, int]:
    start = FIRST_MONDAY + timedelta(days=7 * weeks_after_first)
    return ms(start), ms(start + timedelta(days=7)) - 1


@dataclass
class Want:
    counts: Counter[str]
    rated: int
    served: int
    ratio: float | None
    response_rate: float
    reasons: Counter[str]
    rank: int | None = None


def expected(seeded: Seeded, centre: str) -> dict[str, Want]:
    start, end = week_range(3)
    sel: Selection = {"centre": [centre]}
    by_officer = ratios(seeded.seed, start, end, sel, ("officer",))
    served = Counter(t.officer for t in seeded.seed.tickets
                     if t.centre == centre and in_range(t.time_ns, start, end))
    rs = ratings(seeded.seed, start, end, sel)
    out: dict[str, Want] = {}
    for officer in set(served) | {k[0] for k in by_officer}:
        mine = [r for r in rs if r.officer == officer]
        w = by_officer.get((officer,))
        out[officer] = Want(Counter(r.cls for r in mine), len(mine), served[officer], w.ratio if w else None,
                            len(mine) / served[officer], Counter(c for r in mine for c in r.reasons))
    eligible = {o: v.ratio or 0.0 for o, v in out.items() if v.rated >= MIN_SAMPLE}
    for o, v in out.items():
        v.rank = 1 + sum(r > eligible[o] for r in eligible.values()) if o in eligible else None
    return out


@pytest.fixture(scope="module")
def report(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("report")
    cfg = out / "settings.toml"
    cfg.write_text(f"min_sample = {MIN_SAMPLE}\n", encoding="utf-8")
    result = CliRunner().invoke(main, [
        "report", "weekly", "--centre", "c-ba", "--week", str(WEEK), "--out", str(out), "--config", str(cfg),
        "--influx-url", seeded.db.url, "--db", seeded.db.database])
    assert result.exit_code == 0, result.output
    pdf, csv_path = (Path(p) for p in result.output.split())
    return pdf, csv_path


def test_csv_numbers_equal_the_seed(seeded: Seeded, report: tuple[Path, Path]) -> None:
    want = expected(seeded, "c-ba")
    with report[1].open(encoding="utf-8") as fh:
        rows = {r["officer"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(want) and NEW_OFFICER in rows
    for officer, w in want.items():
        r = rows[officer]
        for k in ("very_satisfied", "satisfied", "not_satisfied"):
            assert int(r[k]) == w.counts[k], (officer, k)
        assert (int(r["rated"]), int(r["served"])) == (w.rated, w.served)
        assert w.ratio is not None and abs(float(r["ratio"]) - w.ratio) < 1e-6
        assert abs(float(r["response_rate"]) - w.response_rate) < 1e-6
        assert (int(r["rank"]) if r["rank"] else None) == w.rank, officer
        top = dict(item.split(":") for item in r["top_reasons"].split(";") if item)
        assert top and all(w.reasons[c] == int(n) for c, n in top.items())
        assert sorted(map(int, top.values()), reverse=True) == [n for _, n in w.reasons.most_common(3)]
    assert rows[NEW_OFFICER]["rank"] == "", "below the minimum sample: not ranked"
    assert sorted(int(r["rank"]) for r in rows.values() if r["rank"])[0] == 1


def test_trend_matches_previous_weeks(seeded: Seeded) -> None:
    card = weekly_scorecard(seeded.db, "c-ba", WEEK, "Asia/Ho_Chi_Minh", MIN_SAMPLE, weeks_back=4)
    for o in card.officers:
        assert [w for w, _, _ in o.trend] == ["2026-W43", "2026-W44", "2026-W45", "2026-W46", "2026-W47"]
        assert o.trend[0][1:] == (None, 0), "no data before the seed"
        for i, (_, ratio, n) in enumerate(o.trend[1:]):
            start, end = week_range(i)
            w = ratios(seeded.seed, start, end, {"centre": ["c-ba"], "officer": [o.officer]}, ()).get(())
            assert (n, ratio) == ((w.rated, w.ratio) if w else (0, None)), (o.officer, i)


def test_pdf_has_one_page_per_officer_with_diacritics(seeded: Seeded, report: tuple[Path, Path]) -> None:
    want = expected(seeded, "c-ba")
    pages = subprocess.run(["pdftotext", "-layout", str(report[0]), "-"], check=True, capture_output=True,
                           text=True).stdout.split("\f")
    pages = [p for p in pages if p.strip()]
    assert len(pages) == len(want)
    for text in pages:
        assert "Phiếu điểm hài lòng tuần 2026-W47" in text and "Không hài lòng" in text
        assert "Rất hài lòng" in text and "Tỷ lệ phản hồi" in text
        officer = next(o for o in want if f"Cán bộ: {o}" in text)
        assert pct(want[officer].ratio) in text and f"{want[officer].rated}" in text
        assert ("Chưa xếp hạng (n < 15)" in text) == (want[officer].rank is None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", str(report[0]),
                    str(ARTIFACTS / "scorecard-page1")], check=True)
    assert (ARTIFACTS / "scorecard-page1.png").stat().st_size > 10_000
    shutil.copy(report[0], ARTIFACTS / report[0].name)


def test_bad_week_and_unreachable_influx_are_clear_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "c-ba", "--week", "2026-47", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "YYYY-Www" in r.output
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "c-ba", "--week", "2026-W47", "--out",
                                  str(tmp_path), "--influx-url", "http://127.0.0.1:9"])
    assert r.exit_code != 0 and "cannot reach InfluxDB" in r.output
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "C'; DROP", "--week", "2026-W47", "--out",
                                  str(tmp_path)])
    assert r.exit_code != 0 and "centre" in r.output
