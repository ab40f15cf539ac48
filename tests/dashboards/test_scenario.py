"""The realistic scenario (tests/dashboards/scenario.py) against every ranking/ratio panel and the weekly CSV.

Seeded with points shaped as the ingest writes them; the expected numbers are the
scenario's own legal truth (never read back from InfluxDB).
"""

from __future__ import annotations

import csv
import math
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboards.boards import all_dashboards
from dashboards.settings import DashboardSettings
from hailong.cli import main
from ingest.influxql import InfluxQL

from .conftest import ScenarioWorld
from .grafana_sim import TimeRange, run_panel, stat_value
from .scenario import CENTRES, DAYS, FIRST, ZERO_DAY, Scenario
from .seed import ms
from .truth import shared_ranks

CELLS = {"n": 0}


@pytest.fixture()
def world(scenario_world: ScenarioWorld) -> tuple[Scenario, DashboardSettings, InfluxQL]:
    return scenario_world.scenario, scenario_world.settings, scenario_world.db


def panel(s: DashboardSettings, key: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    for b in all_dashboards(s):
        js = b.to_json(s.datasource_uid)
        for spec, p in zip(b.panels, js["panels"], strict=True):
            if spec.key == key:
                return js, p
    raise KeyError(key)


RANGES = {"3 weeks": (0, DAYS), "W46": (7, 14), "zero day": (ZERO_DAY[2], ZERO_DAY[2] + 1)}


@pytest.mark.parametrize("rng", sorted(RANGES))
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_officer_panels_equal_the_legal_truth(world: tuple[Scenario, DashboardSettings, InfluxQL], centre: str,
                                              rng: str) -> None:
    sc, s, db = world
    a, b = RANGES[rng]
    start, end = ms(FIRST + timedelta(days=a)), ms(FIRST + timedelta(days=b))
    want = sc.officer_counts(centre, start, end)
    tr = TimeRange(start, end - 1)
    board, rank_panel = panel(s, "officer.ranking")
    table = run_panel(db, board, rank_panel, tr, end, {"centre": [centre]})
    eligible = {o: v for o, v in want.items() if v[0] >= s.min_sample}
    ranks = shared_ranks({o: v[1] / v[0] for o, v in eligible.items()})
    got = {name: (row["Hạng"], row["Đã đánh giá (n)"][i], row["Vé đã phục vụ"][i])
           for row in table.rows for i, name in enumerate(row["Cán bộ"])}
    assert got == {o: (ranks[o], v[0], v[2]) for o, v in eligible.items()}
    CELLS["n"] += 3 * len(got)
    if centre == "c-pd" and rng == "3 weeks":
        assert sorted(ranks.values()) == [1, 1, 3], "two c-pd officers tie at 100 %: ranks 1, 1, 3"
    _, ratio_panel = panel(s, "officer.ratio")
    for officer, (rated, sat, _) in want.items():
        shown = stat_value(ratio_panel, run_panel(db, board, ratio_panel, tr, end,
                                                  {"centre": [centre], "officer": [officer]}))
        expected = sat / rated if rated else None
        assert (shown is None and expected is None) or math.isclose(shown, expected), (officer, shown, expected)
        CELLS["n"] += 1


def test_zero_percent_counter_day_shows_0(world: tuple[Scenario, DashboardSettings, InfluxQL]) -> None:
    _sc, s, db = world
    centre, counter, day = ZERO_DAY
    start, end = ms(FIRST + timedelta(days=day)), ms(FIRST + timedelta(days=day + 1))
    board, p = panel(s, "centre.by_counter")
    table = run_panel(db, board, p, TimeRange(start, end - 1), end, {"centre": [centre]})
    row = next(r for r in table.rows if r["Quầy"] == counter)
    assert row["Tỷ lệ hài lòng"] == 0.0 and row["Hài lòng trở lên"] == 0.0 and row["Đã đánh giá (n)"] > 0
    CELLS["n"] += 3


@pytest.mark.parametrize("week", ["2026-W45", "2026-W46", "2026-W47"])
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_weekly_csv_equals_the_legal_truth(world: tuple[Scenario, DashboardSettings, InfluxQL], centre: str,
                                           week: str, tmp_path: Path) -> None:
    sc, _s, db = world
    w = int(week[-2:]) - 45
    start, end = ms(FIRST + timedelta(days=7 * w)), ms(FIRST + timedelta(days=7 * w + 7))
    want = sc.officer_counts(centre, start, end)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'min_sample = 10\n[influx]\nurl = "{db.url}"\ndatabase = "{db.database}"\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", centre, "--week", week, "--out", str(tmp_path),
                                  "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    with Path(r.output.split()[1]).open(encoding="utf-8") as fh:
        rows = {row["officer"]: row for row in csv.DictReader(fh)}
    ranks = shared_ranks({o: v[1] / v[0] for o, v in want.items() if v[0] >= 10})
    assert set(rows) == set(want)
    for o, (rated, sat, served) in want.items():
        row = rows[o]
        assert (int(row["rated"]), int(row["not_satisfied"]), int(row["served"])) == (rated, rated - sat, served)
        assert (int(row["rank"]) if row["rank"] else None) == ranks.get(o)
        CELLS["n"] += 4


def test_cells_were_checked() -> None:
    assert CELLS["n"] > 100, CELLS
    print(f"scenario cells checked: {CELLS['n']}")
