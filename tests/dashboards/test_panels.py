"""Every panel's queries, after Grafana's substitution, run on real InfluxDB: numbers equal the seed's."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from dashboards.boards import all_dashboards, for_centre
from dashboards.queries import LABELS

from .conftest import Seeded
from .grafana_sim import Table, TimeRange, panel_range, run_panel, stat_value
from .seed import FIRST_MONDAY, NOW, TZ, Selection, in_range, ms
from .truth import last_status, ratings, ratios, top_windows

FULL = TimeRange(ms(FIRST_MONDAY), ms(NOW))
ALL: Selection = {}
ONE_OFFICER: Selection = {"province": ["hn"], "centre": ["c-ba"], "officer": ["o-an"]}
TWO_CENTRES: Selection = {"centre": ["c-ba", "c-hk"], "service": ["ho-tich"]}
SELECTIONS = (ALL, ONE_OFFICER, TWO_CENTRES)
L = LABELS


class Shown:
    """A panel as Grafana would show it for one selection."""

    def __init__(self, seeded: Seeded, key: str, sel: Selection, interval_ms: int = 3_600_000) -> None:
        for board in all_dashboards(seeded.settings):
            js = board.to_json(seeded.settings.datasource_uid)
            for spec, panel in zip(board.panels, js["panels"], strict=True):
                if spec.key == key:
                    self.board, self.panel = js, panel
        # variables this dashboard does not define do not apply to its queries
        names = {v["name"] for v in self.board["templating"]["list"]}
        self.sel: Selection = {k: v for k, v in sel.items() if k in names}
        self.range = panel_range(self.panel, self.board, FULL, ms(NOW))
        self.table: Table = run_panel(seeded.db, self.board, self.panel, FULL, ms(NOW), self.sel, interval_ms)

    def rows_by(self, *cols: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        out = {tuple(r[c] for c in cols): r for r in self.table.rows}
        assert len(out) == len(self.table.rows), "duplicate group rows"
        return out


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def check_ratio_stat(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = ratios(s.seed, shown.range.start_ms, shown.range.end_ms, shown.sel, ()).get(())
    got = stat_value(shown.panel, shown.table)
    expected = None if want is None else want.response if "response" in key else want.ratio
    assert close(got, expected), (key, sel, got, expected)
    if key.endswith("_today"):
        assert shown.range.start_ms == ms(NOW.replace(hour=0, minute=0))
    if key.endswith("_week"):
        assert shown.range.start_ms == ms((NOW - timedelta(days=NOW.weekday())).replace(hour=0, minute=0))


def check_ratio_table(s: Seeded, key: str, sel: Selection, group: tuple[str, ...]) -> None:
    shown = Shown(s, key, sel)
    want = ratios(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, group)
    got = shown.rows_by(*(L[g] for g in group))
    assert set(got) == set(want), (key, sel)
    for k, w in want.items():
        row = got[k]
        assert row[L["rated"]] == w.rated and row[L["satisfied"]] == w.satisfied
        assert row[L["served"]] == w.served and row[L["not_satisfied"]] == w.not_satisfied
        assert close(row[L["ratio"]], w.ratio) and close(row[L["response_rate"]], w.response)
    shown_ratios = [r[L["ratio"]] for r in shown.table.rows]
    assert shown_ratios == sorted(shown_ratios, reverse=True), "best first"


def check_by_class(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = Counter(r.cls for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel))
    assert {r[L["class"]]: r["n"] for r in shown.table.rows} == dict(want)


def check_heatmap(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want: Counter[tuple[str, str]] = Counter()
    days = {1: "Thứ 2", 2: "Thứ 3", 3: "Thứ 4", 4: "Thứ 5", 5: "Thứ 6", 6: "Thứ 7", 7: "Chủ nhật"}
    for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel):
        t = datetime.fromtimestamp(r.time_ns / 1e9, TZ)
        want[(f"{t.hour:02d}", days[t.isoweekday()])] += 1
    got = {(row["Giờ"], day): n for row in shown.table.rows for day, n in row.items()
           if day != "Giờ" and n is not None}
    assert got == dict(want)


def check_live(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = [r for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, walkups=True) if r.cls == "not_satisfied"]
    rs.sort(key=lambda r: r.time_ns, reverse=True)
    want = [(r.time_ns // 1_000_000, r.counter, r.officer, r.ticket, ",".join(r.reasons), r.score) for r in rs[:100]]
    got = [(r["Thời điểm"], r["Quầy"], r["Cán bộ"], r["Vé"], r["Lý do"], r["Điểm"]) for r in shown.table.rows]
    assert got == want and want


def check_devices_online(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    assert {r["Thiết bị"]: r["Trực tuyến"] for r in shown.table.rows} == {
        d: st.online for (_, d), st in last.items()}


def check_weekly_trend(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    centre_sel = {k: v for k, v in shown.sel.items() if k in ("province", "centre", "service")}
    for week in range(4):
        start = FIRST_MONDAY + timedelta(days=7 * week)
        end_ms = min(ms(start + timedelta(days=7)) - 1, FULL.end_ms)
        row = shown.rows_by("Time")[(ms(start),)]
        officer = ratios(s.seed, ms(start), end_ms, shown.sel, ())[()]
        centre = ratios(s.seed, ms(start), end_ms, centre_sel, ())[()]
        assert close(row["Cán bộ"], officer.ratio) and close(row["Trung tâm"], centre.ratio)
    assert len(shown.table.rows) == 4


def check_reasons(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel)
    assert len(shown.table.rows) == 1
    for code, label in s.settings.reasons.items():
        assert shown.table.rows[0].get(label) == (sum(code in r.reasons for r in rs) or None), code


def check_ranking(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    centre_sel = {k: v for k, v in shown.sel.items() if k in ("province", "centre", "service")}
    want = ratios(s.seed, FULL.start_ms, FULL.end_ms, centre_sel, ("officer",))
    eligible = sorted(((k[0], w) for k, w in want.items() if w.rated >= s.settings.min_sample),
                      key=lambda kw: -kw[1].ratio)
    got = [(r[L["officer"]], r["Hạng"], r[L["rated"]]) for r in shown.table.rows]
    assert got == [(o, i + 1, w.rated) for i, (o, w) in enumerate(eligible)]
    assert all(w.rated < s.settings.min_sample for k, w in want.items() if k[0] not in {g[0] for g in got})
    if not sel.get("service"):
        assert "o-moi" not in {g[0] for g in got}, "the officer under the minimum sample is not ranked"


def check_online(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    n = sum(st.online == (key == "fleet.online") for st in last.values())
    assert stat_value(shown.panel, shown.table) == (n or None)


def check_fleet_status(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    got = shown.rows_by("Trung tâm", "Thiết bị")
    assert set(got) == set(last)
    for k, st in last.items():
        if key == "fleet.status":
            assert (got[k]["Trực tuyến"], got[k]["Hàng đợi"], got[k]["Phiên bản"], got[k]["Thời gian chạy (s)"]) == (
                st.online, st.outbox_depth, st.version, st.uptime_s)
        else:
            assert got[k]["Lần cuối thấy"] == st.time_ns // 1_000_000


def check_outbox(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel, interval_ms=6 * 3_600_000)
    want: dict[tuple[str, int], int] = {}
    centres = shown.sel.get("centre")
    for st in s.seed.statuses:
        if in_range(st.time_ns, FULL.start_ms, FULL.end_ms) and (centres is None or st.centre in centres):
            t = st.time_ns // 1_000_000
            k = (st.device, t - t % (6 * 3_600_000))
            want[k] = max(want.get(k, 0), st.outbox_depth)
    assert {(r["device"], r["Time"]): r["max"] for r in shown.table.rows} == want


def check_rejected(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    centres = shown.sel.get("centre")
    want = Counter(r.reason for r in s.seed.rejections if centres is None or r.centre in centres)
    assert {r["Lý do"]: r["Số bản tin"] for r in shown.table.rows} == dict(want)


def check_walkup(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, walkups=True)
    every = Counter((r.centre, r.counter) for r in rs)
    walk = Counter((r.centre, r.counter) for r in rs if r.walkup)
    got = shown.rows_by("Trung tâm", "Quầy")
    assert set(got) == set(every)
    for k, n in every.items():
        assert got[k]["Tất cả"] == n and got[k]["Không vé"] == walk[k]
        assert close(got[k]["Tỷ lệ không vé"], walk[k] / n)


def check_fast(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel)
    n = Counter((r.centre, r.counter, r.officer) for r in rs)
    fast = Counter((r.centre, r.counter, r.officer) for r in rs if (r.response_ms or 0) < 1000)
    got = shown.rows_by("Trung tâm", "Quầy", "Cán bộ")
    assert set(got) == set(n) and sum(fast.values()) > 0
    for k in n:
        assert got[k][L["rated"]] == n[k] and got[k]["Dưới 1 giây"] == fast[k]
        assert close(got[k]["Tỷ lệ dưới 1 giây"], fast[k] / n[k])


def check_top_runs(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = top_windows(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, s.settings.top_run_length)
    assert {k: r["Số cửa sổ"] for k, r in shown.rows_by("Trung tâm", "Cán bộ").items()} == want
    if not sel:
        assert want.get(("c-hk", "o-em"), 0) >= 20 - s.settings.top_run_length + 1, "the seeded run is found"


def check_ticket_rejections(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = Counter((r.centre, r.counter, r.device, r.reason) for r in s.seed.rejections
                   if r.reason in ("duplicate_ticket", "unknown_ticket")
                   and all(v is None or r.tag(k) in v for k, v in shown.sel.items()))
    got = {(r["Trung tâm"], r["Quầy"] or None, r["Thiết bị"], r["Lý do"]): r["Số lần"] for r in shown.table.rows}
    assert got == dict(want)


def check_disagreement(s: Seeded, key: str, sel: Selection) -> None:
    # the seed has no terminal/QMS disagreement: no row (test_integrity.py seeds the cases)
    assert Shown(s, key, sel).table.rows == []


CHECKS: dict[str, Callable[[Seeded, str, Selection], None]] = {
    "centre.ratio_today": check_ratio_stat, "centre.ratio_week": check_ratio_stat,
    "centre.response_today": check_ratio_stat, "centre.response_week": check_ratio_stat,
    "centre.by_class": check_by_class,
    "centre.by_counter": lambda s, k, sel: check_ratio_table(s, k, sel, ("centre", "counter")),
    "centre.by_service": lambda s, k, sel: check_ratio_table(s, k, sel, ("service",)),
    "centre.heatmap": check_heatmap, "centre.live_not_satisfied": check_live,
    "centre.devices_online": check_devices_online,
    "officer.weekly_trend": check_weekly_trend, "officer.ratio": check_ratio_stat,
    "officer.response": check_ratio_stat, "officer.by_class": check_by_class, "officer.reasons": check_reasons,
    "officer.ranking": check_ranking,
    "province.ratio": check_ratio_stat, "province.response": check_ratio_stat,
    "province.centres": lambda s, k, sel: check_ratio_table(s, k, sel, ("centre",)),
    "fleet.online": check_online, "fleet.offline": check_online, "fleet.status": check_fleet_status,
    "fleet.last_seen": check_fleet_status, "fleet.outbox": check_outbox, "fleet.rejected": check_rejected,
    "integrity.walkup": check_walkup, "integrity.fast": check_fast, "integrity.top_runs": check_top_runs,
    "integrity.ticket_rejections": check_ticket_rejections, "integrity.disagreement": check_disagreement,
}


def test_every_panel_has_a_check(seeded: Seeded) -> None:
    keys = [p.key for b in all_dashboards(seeded.settings) for p in b.panels]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(CHECKS)


@pytest.mark.parametrize("sel", SELECTIONS, ids=["all", "one-officer", "two-centres"])
@pytest.mark.parametrize("key", sorted(CHECKS))
def test_panel_number_equals_seed(seeded: Seeded, key: str, sel: Selection) -> None:
    CHECKS[key](seeded, key, sel)


def test_today_panels_cover_only_today(seeded: Seeded) -> None:
    today = Shown(seeded, "centre.ratio_today", ALL)
    week = Shown(seeded, "centre.ratio_week", ALL)
    n_today = stat_value(today.panel, Table(today.table.columns, today.table.rows))
    assert n_today is not None and today.table.rows[0]["rated"] < week.table.rows[0]["rated"]


def test_per_centre_copy_shows_only_its_centre(seeded: Seeded) -> None:
    board = next(b for b in all_dashboards(seeded.settings) if b.uid == "hl-centre")
    locked = for_centre(board, "hn", "c-hk", "Hoàn Kiếm").to_json(seeded.settings.datasource_uid)
    panel = next(p for spec, p in zip(board.panels, locked["panels"], strict=True) if spec.key == "centre.by_counter")
    table = run_panel(seeded.db, locked, panel, FULL, ms(NOW), {})  # nothing selected: the constants still apply
    want = ratios(seeded.seed, FULL.start_ms, FULL.end_ms, {"centre": ["c-hk"]}, ("centre", "counter"))
    assert {(r[L["centre"]], r[L["counter"]]): r[L["rated"]] for r in table.rows} == {
        k: w.rated for k, w in want.items()}


ROLLUP_KEYS = sorted(k for k in CHECKS if k.split(".")[0] in ("officer", "province"))


@pytest.mark.parametrize("sel", (ALL, ONE_OFFICER), ids=["all", "one-officer"])
@pytest.mark.parametrize("key", ROLLUP_KEYS)
def test_raw_mode_panels_equal_seed_too(seeded: Seeded, key: str, sel: Selection) -> None:
    """use_rollups = false (no continuous queries installed): the same numbers from the raw points."""
    raw = dataclasses.replace(seeded, settings=seeded.settings.model_copy(update={"use_rollups": False}))
    shown = Shown(raw, key, sel)
    assert not any("_1d" in t["query"] for t in shown.panel["targets"])
    assert any("_1d" in t["query"] for t in Shown(seeded, key, sel).panel["targets"])
    CHECKS[key](raw, key, sel)
