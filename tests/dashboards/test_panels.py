"""Every panel's queries, after Grafana's substitution, run on real InfluxDB and through Grafana's own
frontend code (@grafana/data): numbers equal the seed's and every cell reads as a person should read it."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from broker.contract import WEB_DEVICE
from dashboards.boards import all_dashboards, for_centre
from dashboards.boards_fleet import QMS_STATE_TEXT
from dashboards.channels import CHANNEL_LABELS
from dashboards.grafana import NO_DATA
from dashboards.queries import CLASS_TEXT, LABELS

from .conftest import Seeded
from .grafana_backend import TimeRange
from .grafana_frontend import Shown as Displayed
from .grafana_frontend import panel_range, show_panel
from .readable import DASH, audit, count, local_time, pct, reasons, web_delay_texts
from .seed import FIRST_MONDAY, NOW, TZ, Selection, in_range, ms, selected
from .truth import last_status, ratings, ratios, shared_ranks, top_windows

FULL = TimeRange(ms(FIRST_MONDAY), ms(NOW))
ALL: Selection = {}
ONE_OFFICER: Selection = {"province": ["hn"], "centre": ["c-ba"], "officer": ["o-an"]}
TWO_CENTRES: Selection = {"centre": ["c-ba", "c-hk"], "service": ["ho-tich"]}
SELECTIONS = (ALL, ONE_OFFICER, TWO_CENTRES)
L = LABELS
CELLS: Counter[str] = Counter()  # panel key -> displayed cells audited
ONLINE = {True: "Trực tuyến", False: "Ngoại tuyến"}  # a person reads the state, never true/false


def board_of(settings: Any, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for board in all_dashboards(settings):
        js = board.to_json(settings.datasource_uid)
        for spec, panel in zip(board.panels, js["panels"], strict=True):
            if spec.key == key:
                return js, panel
    raise KeyError(key)


def per_single_value(seeded: Seeded, key: str, sel: Selection) -> list[Selection]:
    """A selection as a person makes it on this panel's board: a single-valued variable (centre on the
    centre/officer boards, province on the province board) takes one value at a time, so a multi or All
    choice there becomes one selection per value (the per-centre repeat)."""
    board, _ = board_of(seeded.settings, key)
    out = [dict(sel)]
    for var in board["templating"]["list"]:
        if var["type"] == "query" and not var["multi"]:
            name = var["name"]
            values = sel.get(name) or sorted({r.tag(name) for r in seeded.seed.ratings})
            out = [s | {name: [v]} for s in out for v in values]
    return out


class Shown:
    """A panel as Grafana would show it for one selection."""

    def __init__(self, seeded: Seeded, key: str, sel: Selection, interval_ms: int = 3_600_000) -> None:
        self.board, self.panel = board_of(seeded.settings, key)
        # variables this dashboard does not define do not apply to its queries
        names = {v["name"] for v in self.board["templating"]["list"]}
        self.sel: Selection = {k: v for k, v in sel.items() if k in names}
        self.range = panel_range(self.panel, self.board, FULL, ms(NOW))
        self.table: Displayed = show_panel(seeded.db, self.board, self.panel, FULL, ms(NOW), self.sel, interval_ms)
        CELLS[key] += audit(f"{key} {sel}", self.panel, self.table)

    def rows_by(self, *cols: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        out = {tuple(r[c] for c in cols): r for r in self.table.rows}
        assert len(out) == len(self.table.rows), "duplicate group rows"
        return out

    def text_by(self, *cols: str) -> dict[tuple[Any, ...], dict[str, str]]:
        """The displayed text of each row, by the raw values of ``cols``."""
        return {tuple(r[c] for c in cols): t for r, t in zip(self.table.rows, self.table.text, strict=True)}


def close(a: float | None, b: float | None) -> bool:
    """Shown value equals the hand count; a ratio of nothing is NaN in Grafana, shown as "—" (None here)."""
    if isinstance(a, float) and math.isnan(a):
        a = None
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def check_ratio_stat(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = ratios(s.seed, shown.range.start_ms, shown.range.end_ms, shown.sel, ()).get(())
    if want is None:
        expected = NO_DATA
    elif "response" in key:
        expected = pct(want.rated, want.served)
    else:
        expected = pct(want.satisfied, want.rated)  # served but nothing rated: 0/0, shown as "—"
    assert shown.table.stat == [expected], (key, sel, shown.table.stat, expected)
    if key.endswith("_today"):
        assert shown.range.start_ms == ms(NOW.replace(hour=0, minute=0))
    if key.endswith("_week"):
        assert shown.range.start_ms == ms((NOW - timedelta(days=NOW.weekday())).replace(hour=0, minute=0))


def check_ratio_table(s: Seeded, key: str, sel: Selection, group: tuple[str, ...]) -> None:
    shown = Shown(s, key, sel)
    want = ratios(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, group)
    got = shown.rows_by(*(L[g] for g in group))
    assert set(got) == set(want), (key, sel)
    text = shown.text_by(*(L[g] for g in group))
    for k, w in want.items():
        row = got[k]
        assert row[L["rated"]] == w.rated and row[L["satisfied"]] == w.satisfied
        assert row[L["served"]] == w.served and row[L["not_satisfied"]] == w.not_satisfied
        assert close(row[L["ratio"]], w.ratio) and close(row[L["response_rate"]], w.response)
        assert (text[k][L["ratio"]], text[k][L["response_rate"]], text[k][L["rated"]]) == (
            pct(w.satisfied, w.rated), pct(w.rated, w.served), count(w.rated)), (k, text[k])
    shown_ratios = [r[L["ratio"]] for r in shown.table.rows if not math.isnan(r[L["ratio"]])]
    assert shown_ratios == sorted(shown_ratios, reverse=True), "best first"


def check_rank_table(s: Seeded, key: str, sel: Selection, label: str, min_sample: int) -> None:
    """Shared rank (1, 1, 3) over the rows with n >= min_sample; a tie is one line listing its members,
    its n, served and response rate the line's totals."""
    shown = Shown(s, key, sel)
    centre_sel = {k: v for k, v in shown.sel.items() if k in ("province", "centre", "service")}
    want = {k[0]: w for k, w in ratios(s.seed, FULL.start_ms, FULL.end_ms, centre_sel, (label,)).items()
            if w.rated >= max(min_sample, 1)}
    ranks = shared_ranks({k: w.ratio for k, w in want.items() if w.ratio is not None})
    got = {}
    for row, text in zip(shown.table.rows, shown.table.text, strict=True):
        members = row[L[label]]
        assert text[L[label]] == ", ".join(members)
        rated, served = sum(want[m].rated for m in members), sum(want[m].served for m in members)
        assert (text["Hạng"], text[L["rated"]], text[L["served"]], text[L["response_rate"]]) == (
            str(ranks[members[0]]), count(rated), count(served), pct(rated, served)), (members, text)
        for name in members:
            got[name] = (row["Hạng"], row[L["ratio"]], text[L["ratio"]])
    assert set(got) == set(want), (key, sel)
    for name, w in want.items():
        assert got[name][0] == ranks[name], (name, got[name])
        assert close(got[name][1], w.ratio) and got[name][2] == pct(w.satisfied, w.rated)
    assert [r["Hạng"] for r in shown.table.rows] == sorted(r["Hạng"] for r in shown.table.rows)


def check_by_class(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want = Counter(r.cls for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel))
    assert {r[L["class"]]: r["n"] for r in shown.table.rows} == dict(want)
    names = dict(CLASS_TEXT)
    assert {t[L["class"]]: t["n"] for t in shown.table.text} == {names[c]: count(n) for c, n in want.items()}


def check_heatmap(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    want: Counter[tuple[str, str]] = Counter()
    days = {1: "Thứ 2", 2: "Thứ 3", 3: "Thứ 4", 4: "Thứ 5", 5: "Thứ 6", 6: "Thứ 7", 7: "Chủ nhật"}
    for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel):
        t = datetime.fromtimestamp(r.time_ns / 1e9, TZ)
        want[(f"{t.hour:02d}", days[t.isoweekday()])] += 1
    got = {(row["Giờ"], day): n for row in shown.table.text for day, n in row.items() if day != "Giờ" and n}
    assert got == {k: count(n) for k, n in want.items()}


def check_live(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = [r for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, walkups=True) if r.cls == "not_satisfied"]
    rs.sort(key=lambda r: r.time_ns, reverse=True)
    want = [(local_time(r.time_ns // 1_000_000, TZ.key), r.counter, r.officer, r.ticket or DASH,
             reasons(r.reasons), count(r.score)) for r in rs[:100]]
    got = [(r["Thời điểm"], r["Quầy"], r["Cán bộ"], r["Vé"], r["Lý do"], r["Điểm"]) for r in shown.table.text]
    assert got == want and want


def check_devices_online(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    assert {r["Thiết bị"]: r["Trực tuyến"] for r in shown.table.rows} == {
        d: st.online for (_, d), st in last.items()}
    assert {r["Thiết bị"]: r["Trực tuyến"] for r in shown.table.text} == {
        d: ONLINE[st.online] for (_, d), st in last.items()}


def check_weekly_trend(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    centre_sel = {k: v for k, v in shown.sel.items() if k in ("province", "centre", "service")}
    assert centre_sel.get("centre") and len(centre_sel["centre"]) == 1, "the centre line is one centre"
    weeks = 0
    for week in range(4):
        start = FIRST_MONDAY + timedelta(days=7 * week)
        end_ms = min(ms(start + timedelta(days=7)) - 1, FULL.end_ms)
        officer = ratios(s.seed, ms(start), end_ms, shown.sel, ()).get(())
        centre = ratios(s.seed, ms(start), end_ms, centre_sel, ()).get(())
        if centre is None or not centre.rated:
            assert (ms(start),) not in shown.rows_by("Time")
            continue
        weeks += 1
        row = shown.rows_by("Time")[(ms(start),)]
        assert close(row["Cán bộ"], officer.ratio if officer else None) and close(row["Trung tâm"], centre.ratio)
    assert len(shown.table.rows) == weeks


def check_reasons(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = [r for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel) if r.cls == "not_satisfied"]
    assert len(shown.table.rows) == (1 if any(r.reasons for r in rs) else 0)
    for code, label in s.settings.reasons.items():
        if not shown.table.rows:
            break
        assert shown.table.rows[0].get(label) == (sum(code in r.reasons for r in rs) or None), code


def check_online(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    n = sum(st.online == (key == "fleet.online") for st in last.values())
    assert shown.table.stat == [count(n) if n else NO_DATA]


def check_fleet_status(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    last = last_status(s.seed, FULL.start_ms, FULL.end_ms, shown.sel.get("centre"))
    got = shown.rows_by("Trung tâm", "Thiết bị")
    assert set(got) == set(last)
    for k, st in last.items():
        if key == "fleet.status":
            assert (got[k]["Trực tuyến"], got[k]["Hàng đợi"], got[k]["Phiên bản"], got[k]["Thời gian chạy (s)"]) == (
                st.online, st.outbox_depth, st.version, st.uptime_s)
            text = shown.text_by("Trung tâm", "Thiết bị")[k]
            assert (text["Trực tuyến"], text["Hàng đợi"], text["Thời gian chạy (s)"]) == (
                ONLINE[st.online], count(st.outbox_depth), count(st.uptime_s))
        else:
            assert got[k]["Lần cuối thấy"] == st.time_ns // 1_000_000
            assert shown.text_by("Trung tâm", "Thiết bị")[k]["Lần cuối thấy"] == local_time(
                st.time_ns // 1_000_000, TZ.key)


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


def check_qms_bridge(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    assert shown.range.start_ms == ms(NOW) - 7 * 86_400_000, "a bridge quiet since Friday still listed on Monday"
    centres = shown.sel.get("centre")
    last: dict[str, Any] = {}
    for st in sorted(s.seed.statuses, key=lambda x: x.time_ns):
        if st.device == "qms-bridge" and in_range(st.time_ns, shown.range.start_ms, shown.range.end_ms) and (
                centres is None or st.centre in centres):
            last[st.centre] = st
    got = shown.rows_by("Trung tâm")
    assert {k[0]: (r["Trạng thái"], r["Lần cuối thấy"]) for k, r in got.items()} == {
        c: (st.state, st.time_ns // 1_000_000) for c, st in last.items()}
    states = dict(QMS_STATE_TEXT)
    assert {k[0]: (t["Trạng thái"], t["Lần cuối thấy"]) for k, t in shown.text_by("Trung tâm").items()} == {
        c: (states[st.state], local_time(st.time_ns // 1_000_000, TZ.key)) for c, st in last.items()}


def check_qms_last_event(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    centres = shown.sel.get("centre")
    latest: dict[str, int] = {}
    numbers: dict[tuple[str, int], set[str]] = {}
    for t in s.seed.tickets:
        if in_range(t.time_ns, shown.range.start_ms, shown.range.end_ms) and (centres is None or t.centre in centres):
            latest[t.centre] = max(latest.get(t.centre, 0), t.time_ns // 1_000_000)
            numbers.setdefault((t.centre, t.time_ns // 1_000_000), set()).add(t.ticket)
    got = shown.rows_by("Trung tâm")
    assert {k[0]: r["Vé đóng gần nhất"] for k, r in got.items()} == latest
    for (centre,), r in got.items():
        assert r["Số vé"] in numbers[(centre, latest[centre])]


def check_walkup(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel, walkups=True)
    every = Counter((r.centre, r.counter) for r in rs)
    walk = Counter((r.centre, r.counter) for r in rs if r.walkup)
    got = shown.rows_by("Trung tâm", "Quầy")
    assert set(got) == set(every)
    text = shown.text_by("Trung tâm", "Quầy")
    for k, n in every.items():
        assert got[k]["Tất cả"] == n and got[k]["Không vé"] == walk[k]
        assert close(got[k]["Tỷ lệ không vé"], walk[k] / n) and text[k]["Tỷ lệ không vé"] == pct(walk[k], n)


def check_fast(s: Seeded, key: str, sel: Selection) -> None:
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel)
    n = Counter((r.centre, r.counter, r.officer) for r in rs)
    fast = Counter((r.centre, r.counter, r.officer) for r in rs if (r.response_ms or 0) < 1000)
    got = shown.rows_by("Trung tâm", "Quầy", "Cán bộ")
    assert set(got) == set(n) and sum(fast.values()) > 0
    text = shown.text_by("Trung tâm", "Quầy", "Cán bộ")
    for k in n:
        assert got[k][L["rated"]] == n[k] and got[k]["Dưới 1 giây"] == fast[k]
        assert close(got[k]["Tỷ lệ dưới 1 giây"], fast[k] / n[k])
        assert text[k]["Tỷ lệ dưới 1 giây"] == pct(fast[k], n[k]) and text[k]["Dưới 1 giây"] == count(fast[k])


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
    reasons = {"duplicate_ticket": "Vé đã được đánh giá", "unknown_ticket": "Vé không khớp vé đã đóng"}
    assert sorted((t["Lý do"], t["Số lần"]) for t in shown.table.text) == sorted(
        (reasons[k[3]], count(n)) for k, n in want.items())


def check_late(s: Seeded, key: str, sel: Selection) -> None:
    # the seed has no late complaint (test_alerts_ingest.py sends one through the real ingest)
    assert Shown(s, key, sel).table.rows == []


def check_disagreement(s: Seeded, key: str, sel: Selection) -> None:
    # the seed has no terminal/QMS disagreement: no row (test_integrity.py seeds the cases)
    assert Shown(s, key, sel).table.rows == []


def check_channels(s: Seeded, key: str, sel: Selection, group: tuple[str, ...]) -> None:
    """Counter vs web: the seed's terminals are the counter channel; device "web" would be the web's."""
    shown = Shown(s, key, sel)
    rs = ratings(s.seed, FULL.start_ms, FULL.end_ms, shown.sel)
    counter = Counter(tuple(r.tag(g) for g in group) for r in rs if r.device != WEB_DEVICE)
    web = Counter(tuple(r.tag(g) for g in group) for r in rs if r.device == WEB_DEVICE)
    served = Counter(tuple(t.tag(g) for g in group) for t in s.seed.tickets
                     if in_range(t.time_ns, FULL.start_ms, FULL.end_ms) and selected(t, shown.sel))
    text = shown.text_by(*(CHANNEL_LABELS[g] for g in group))
    assert set(text) == set(counter) | set(web) | set(served), (key, sel)
    C = CHANNEL_LABELS
    for k, row in text.items():
        c, w, n = counter[k], web[k], counter[k] + web[k]
        assert (row[C["counter_rated"]], row[C["web_rated"]], row[C["rated"]], row[C["web_share"]],
                row[C["served"]], row[C["counter_response"]], row[C["web_response"]], row[C["response_rate"]]) == (
            count(c), count(w), count(n), pct(w, n), count(served[k]), pct(c, served[k]), pct(w, served[k]),
            pct(n, served[k])), (key, k)


def check_web_delay(s: Seeded, key: str, sel: Selection) -> None:
    delays = [r.response_ms or 0 for r in ratings(s.seed, FULL.start_ms, FULL.end_ms, sel)
              if r.device == WEB_DEVICE]
    assert Shown(s, key, sel).table.stat == (web_delay_texts(delays) if delays else [NO_DATA])


def check_no_web(s: Seeded, key: str, sel: Selection) -> None:
    # the seed has no web rating (test_channels.py sends them through the real ingest)
    assert not any(r.device == WEB_DEVICE for r in s.seed.ratings)
    assert Shown(s, key, sel).table.rows == []


CHECKS: dict[str, Callable[[Seeded, str, Selection], None]] = {
    "centre.ratio_today": check_ratio_stat, "centre.ratio_week": check_ratio_stat,
    "centre.response_today": check_ratio_stat, "centre.response_week": check_ratio_stat,
    "centre.by_class": check_by_class,
    "centre.by_counter": lambda s, k, sel: check_ratio_table(s, k, sel, ("counter",)),
    "centre.by_service": lambda s, k, sel: check_ratio_table(s, k, sel, ("service",)),
    "centre.heatmap": check_heatmap, "centre.live_not_satisfied": check_live,
    "centre.devices_online": check_devices_online,
    "officer.weekly_trend": check_weekly_trend, "officer.ratio": check_ratio_stat,
    "officer.response": check_ratio_stat, "officer.by_class": check_by_class, "officer.reasons": check_reasons,
    "officer.ranking": lambda s, k, sel: check_rank_table(s, k, sel, "officer", s.settings.min_sample),
    "province.ratio": check_ratio_stat, "province.response": check_ratio_stat,
    "province.centres": lambda s, k, sel: check_rank_table(s, k, sel, "centre", 0),
    "fleet.online": check_online, "fleet.offline": check_online, "fleet.status": check_fleet_status,
    "fleet.last_seen": check_fleet_status, "fleet.outbox": check_outbox, "fleet.rejected": check_rejected,
    "fleet.qms_bridge": check_qms_bridge, "fleet.qms_last_event": check_qms_last_event,
    "integrity.walkup": check_walkup, "integrity.fast": check_fast, "integrity.top_runs": check_top_runs,
    "integrity.ticket_rejections": check_ticket_rejections, "integrity.disagreement": check_disagreement,
    "integrity.late": check_late,
    "centre.channels": lambda s, k, sel: check_channels(s, k, sel, ()),
    "officer.channels": lambda s, k, sel: check_channels(s, k, sel, ("officer",)),
    "centre.web_delay": check_web_delay, "officer.web_delay": check_web_delay,
    "integrity.web_sources": check_no_web, "integrity.web_refusals": check_no_web,
}


def test_every_panel_has_a_check(seeded: Seeded) -> None:
    keys = [p.key for b in all_dashboards(seeded.settings) for p in b.panels]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(CHECKS)


@pytest.mark.parametrize("sel", SELECTIONS, ids=["all", "one-officer", "two-centres"])
@pytest.mark.parametrize("key", sorted(CHECKS))
def test_panel_number_equals_seed(seeded: Seeded, key: str, sel: Selection) -> None:
    for one in per_single_value(seeded, key, sel):
        CHECKS[key](seeded, key, one)


def test_today_panels_cover_only_today(seeded: Seeded) -> None:
    today = Shown(seeded, "centre.ratio_today", {"centre": ["c-ba"]})
    week = Shown(seeded, "centre.ratio_week", {"centre": ["c-ba"]})
    assert today.table.stat != [NO_DATA] and today.table.rows[0]["rated"] < week.table.rows[0]["rated"]


def test_per_centre_copy_shows_only_its_centre(seeded: Seeded) -> None:
    board = next(b for b in all_dashboards(seeded.settings) if b.uid == "hl-centre")
    locked = for_centre(board, "hn", "c-hk", "Hoàn Kiếm").to_json(seeded.settings.datasource_uid)
    panel = next(p for spec, p in zip(board.panels, locked["panels"], strict=True) if spec.key == "centre.by_counter")
    table = show_panel(seeded.db, locked, panel, FULL, ms(NOW), {})  # nothing selected: the constants still apply
    want = ratios(seeded.seed, FULL.start_ms, FULL.end_ms, {"centre": ["c-hk"]}, ("centre", "counter"))
    assert {("c-hk", r[L["counter"]]): r[L["rated"]] for r in table.rows} == {
        k: w.rated for k, w in want.items()}


# the web's delay is a median/percentile of raw delays: no daily count can give it, so it always reads raw
RAW_ONLY = ("officer.web_delay",)
ROLLUP_KEYS = sorted(k for k in CHECKS if k.split(".")[0] in ("officer", "province") and k not in RAW_ONLY)


@pytest.mark.parametrize("sel", (ALL, ONE_OFFICER), ids=["all", "one-officer"])
@pytest.mark.parametrize("key", ROLLUP_KEYS)
def test_raw_mode_panels_equal_seed_too(seeded: Seeded, key: str, sel: Selection) -> None:
    """use_rollups = false (no continuous queries installed): the same numbers from the raw points."""
    raw = dataclasses.replace(seeded, settings=seeded.settings.model_copy(update={"use_rollups": False}))
    one = per_single_value(raw, key, sel)[0]
    shown = Shown(raw, key, one)
    assert not any("_1d" in t["query"] for t in shown.panel["targets"])
    assert any("_1d" in t["query"] for t in Shown(seeded, key, one).panel["targets"])
    for one in per_single_value(raw, key, sel):
        CHECKS[key](raw, key, one)



def test_heatmap_hours_follow_the_centre_not_the_viewer(seeded: Seeded) -> None:
    """The heatmap's formatTime carries the dashboard's zone: a viewer whose session is on UTC still reads
    the centre's hours (07, 08, ...); without the option Grafana would format in the viewer's zone."""
    board, panel = board_of(seeded.settings, "centre.heatmap")
    sel = {"centre": ["c-ba"]}
    local = show_panel(seeded.db, board, panel, FULL, ms(NOW), sel)
    viewer_utc = show_panel(seeded.db, board | {"timezone": "utc"}, panel, FULL, ms(NOW), sel)
    hours = sorted(t["Giờ"] for t in local.text)
    assert hours and hours == sorted(t["Giờ"] for t in viewer_utc.text)
    assert all("07" <= h <= "18" for h in hours), hours  # opening hours in Hà Nội time
    unpinned = {**panel, "transformations": [
        {**tr, "options": {k: v for k, v in tr["options"].items() if k != "timezone"}}
        for tr in panel["transformations"]]}
    shifted = show_panel(seeded.db, board | {"timezone": "utc"}, unpinned, FULL, ms(NOW), sel)
    assert sorted(t["Giờ"] for t in shifted.text) != hours, "the option is what pins it"
