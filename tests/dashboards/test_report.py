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
    reasons_satisfied: Counter[str]
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
                            len(mine) / served[officer],
                            Counter(c for r in mine if r.cls == "not_satisfied" for c in r.reasons),
                            Counter(c for r in mine if r.cls != "not_satisfied" for c in r.reasons))
    eligible = {o: v.ratio or 0.0 for o, v in out.items() if v.rated >= MIN_SAMPLE}
    for o, v in out.items():
        v.rank = 1 + sum(r > eligible[o] for r in eligible.values()) if o in eligible else None
    return out


NAMES = {"o-an": "Nguyễn Thị An", "o-binh": "Trần Văn Bình", "o-chi": "Lê Thị Chi", NEW_OFFICER: "Phạm Văn Mới"}


def write_registry(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "centres.toml").write_text('[centre.c-ba]\nname = "Trung tâm PVHCC quận Ba Đình"\nprovince = "hn"\n'
                                       '[centre.c-ba.counter.q1]\nlabel = "Quầy 1"\n', encoding="utf-8")
    (root / "devices.toml").write_text("", encoding="utf-8")
    (root / "officers.toml").write_text("".join(f'[officer.{o}]\nname = "{n}"\ncentre = "c-ba"\n'
                                                for o, n in NAMES.items()), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def report(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("report")
    cfg = out / "settings.toml"
    cfg.write_text(f"min_sample = {MIN_SAMPLE}\n", encoding="utf-8")
    result = CliRunner().invoke(main, [
        "report", "weekly", "--centre", "c-ba", "--week", str(WEEK), "--out", str(out), "--config", str(cfg),
        "--influx-url", seeded.db.url, "--db", seeded.db.database, "--registry", str(write_registry(out / "fleet"))])
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
        for column, counts in (("reasons_not_satisfied", w.reasons), ("reasons_satisfied", w.reasons_satisfied)):
            got = {c: int(n) for c, n in (item.split(":") for item in r[column].split(";") if item)}
            assert got == dict(counts), (officer, column)
        assert r["officer_name"] == NAMES[officer] and r["centre_name"] == "Trung tâm PVHCC quận Ba Đình"
        assert (r["week_start"], r["week_end"]) == ("2026-11-16", "2026-11-22")
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
    assert len(pages) == len(want) + 1, "a summary page, then one page per officer"
    summary = pages[0]
    assert "Tổng hợp hài lòng tuần 2026-W47 (16/11/2026 – 22/11/2026)" in summary
    assert "Trung tâm PVHCC quận Ba Đình" in summary and "n ≥ 15" in summary
    order = sorted(want, key=lambda o: (want[o].rank is None, want[o].rank or 0, NAMES[o]))
    positions = [summary.index(NAMES[o]) for o in order]
    assert positions == sorted(positions), "officers in rank order"
    for text in pages[1:]:
        assert "Phiếu điểm hài lòng tuần 2026-W47 (16/11/2026 – 22/11/2026)" in text and "Không hài lòng" in text
        assert "Rất hài lòng" in text and "Tỷ lệ phản hồi" in text and "gồm Bình thường" in text
        officer = next(o for o in want if f"Cán bộ: {NAMES[o]}" in text)
        assert pct(want[officer].ratio) in text and f"{want[officer].rated}" in text
        assert ("Chưa xếp hạng (n < 15)" in text) == (want[officer].rank is None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page in (1, 2):
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", str(page), "-l", str(page), "-singlefile",
                        str(report[0]), str(ARTIFACTS / f"scorecard-page{page}")], check=True)
        assert (ARTIFACTS / f"scorecard-page{page}.png").stat().st_size > 10_000
    shutil.copy(report[0], ARTIFACTS / report[0].name)


def test_bad_week_and_unreachable_influx_are_clear_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "c-ba", "--week", "2026-47", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "YYYY-Www" in r.output
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "c-ba", "--week", "2026-W47", "--out",
                                  str(tmp_path), "--influx-url", "http://127.0.0.1:9", "--allow-ids"])
    assert r.exit_code != 0 and "cannot reach InfluxDB" in r.output
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "C'; DROP", "--week", "2026-W47", "--out",
                                  str(tmp_path)])
    assert r.exit_code != 0 and "centre" in r.output


def test_unknown_centre_or_empty_week_exit_non_zero(seeded: Seeded, tmp_path: Path) -> None:
    base = ["report", "weekly", "--out", str(tmp_path / "out"), "--influx-url", seeded.db.url,
            "--db", seeded.db.database]
    r = CliRunner().invoke(main, [*base, "--centre", "c-bx", "--week", "2026-W47",
                                  "--registry", str(write_registry(tmp_path / "fleet"))])
    assert r.exit_code != 0 and "unknown centre 'c-bx'" in r.output and "c-ba" in r.output, r.output
    r = CliRunner().invoke(main, [*base, "--centre", "c-bx", "--week", "2026-W47", "--allow-ids"])  # ids: no data
    assert r.exit_code != 0 and "no rated or served ticket for centre 'c-bx'" in r.output, r.output
    r = CliRunner().invoke(main, [*base, "--centre", "c-ba", "--week", "2026-W30", "--allow-ids"])
    assert r.exit_code != 0 and "2026-W30 (20/07/2026 – 26/07/2026)" in r.output, r.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "no empty PDF written"


def test_reason_labels_are_the_terminals_own() -> None:
    """One catalogue: the report's reason labels are what the terminal shows (broker/ratingscale/vi.toml)."""
    from broker import ratingscale
    from dashboards.settings import DashboardSettings
    from device.i18n import load_catalogue

    labels = {code: load_catalogue("vi").reason(code) for code in ratingscale.REASON_CODES}
    assert labels == DashboardSettings().reasons == ratingscale.words("vi")["reasons"]["codes"]
    assert labels["thai_do"] == "Thái độ cán bộ"


# --------------------------------------------------------------------------- the registry, found by itself

def officer_names(csv_path: Path) -> dict[str, str]:
    with csv_path.open(encoding="utf-8") as fh:
        return {row["officer"]: row["officer_name"] for row in csv.DictReader(fh)}


@pytest.fixture
def no_registry_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither HAILONG_FLEET nor an ingest config at the default place, whatever the machine has."""
    monkeypatch.delenv("HAILONG_FLEET", raising=False)
    monkeypatch.setattr("dashboards.registry_lookup.DEFAULT_INGEST_CONFIG", tmp_path / "absent" / "ingest.toml")


def technician_fleet(root: Path) -> Path:
    """The fleet as docs/technician.md builds it: ``export HAILONG_FLEET=...`` and the fleet commands."""
    env = {"HAILONG_FLEET": str(root)}
    steps = [["fleet", "init"],
             ["fleet", "add-centre", "c-ba", "--name", "Trung tâm PVHCC quận Ba Đình", "--province", "hn",
              "--counters", "3"],
             *(["fleet", "add-officer", o, "--name", n, "--centre", "c-ba"] for o, n in NAMES.items())]
    for args in steps:
        r = CliRunner().invoke(main, args, env=env)
        assert r.exit_code == 0, (args, r.output)
    return root


def test_weekly_finds_the_fleet_the_technician_exported(seeded: Seeded, tmp_path: Path,
                                                        no_registry_anywhere: None) -> None:
    """`hailong report weekly --centre C --week W --out DIR` with HAILONG_FLEET set as the technician guide
    does: names, not ids, without any --registry."""
    fleet = technician_fleet(tmp_path / "fleet")
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", "c-ba", "--week", str(WEEK), "--out",
                                  str(tmp_path / "out"), "--influx-url", seeded.db.url, "--db", seeded.db.database],
                           env={"HAILONG_FLEET": str(fleet)})
    assert r.exit_code == 0, r.output
    pdf, csv_path = (Path(p) for p in r.output.split())
    assert {o: n for o, n in officer_names(csv_path).items() if o in NAMES} == NAMES
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Trung tâm PVHCC quận Ba Đình" in text and all(n in text for n in NAMES.values())


def test_weekly_finds_the_registry_of_the_ingest_config_or_its_own(seeded: Seeded, tmp_path: Path,
                                                                    no_registry_anywhere: None) -> None:
    write_registry(tmp_path / "etc" / "fleet")
    ingest = tmp_path / "etc" / "ingest.toml"
    ingest.write_text('client_id = "hl-ingest-1"\nregistry = "fleet"\n', encoding="utf-8")  # relative to the file
    base = ["report", "weekly", "--centre", "c-ba", "--week", str(WEEK), "--influx-url", seeded.db.url,
            "--db", seeded.db.database]
    r = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "a"), "--ingest-config", str(ingest)])
    assert r.exit_code == 0, r.output
    assert {o: n for o, n in officer_names(Path(r.output.split()[1])).items() if o in NAMES} == NAMES
    cfg = tmp_path / "etc" / "dashboards.toml"
    cfg.write_text('registry = "fleet"\n', encoding="utf-8")
    r = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert {o: n for o, n in officer_names(Path(r.output.split()[1])).items() if o in NAMES} == NAMES


def test_without_any_registry_it_refuses_ids_unless_asked(seeded: Seeded, tmp_path: Path,
                                                          no_registry_anywhere: None) -> None:
    base = ["report", "weekly", "--centre", "c-ba", "--week", str(WEEK), "--out", str(tmp_path / "out"),
            "--influx-url", seeded.db.url, "--db", seeded.db.database]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 1, r.output
    for how in ("no fleet registry found", "--registry DIR", "HAILONG_FLEET", "--ingest-config", "--allow-ids"):
        assert how in r.output, (how, r.output)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "nothing written"
    r = CliRunner().invoke(main, [*base, "--allow-ids"])
    assert r.exit_code == 0, r.output
    shown = officer_names(Path(r.output.split()[1]))
    assert shown and all(n == o for o, n in shown.items()), "bare ids, as asked"
