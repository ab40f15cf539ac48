"""Every panel of the centre, officer and province dashboards equals the field scenario's hand count.

Table-driven: ``CHECKS`` has one entry per panel key, and the boards are enumerated from
``dashboards.boards.all_dashboards``, so a panel added without a check fails
:func:`test_every_panel_has_a_scenario_check`. Each panel's queries run on the seeded scenario
(points shaped as the ingest writes them) and its transformations and field display run in
Grafana's own frontend code (@grafana/data, tests/dashboards/grafana_frontend.py), for
- one centre at a time (the single-valued centre / province variable, repeated per value);
- single, multi and All selections of the other variables;
- a day range (the 0 % counter-day), each ISO week and the whole 3 weeks;
- rollup and raw modes where the board has both;
and every shown cell is compared, as the text Grafana displays ("89.7%", "—", "45"), with the hand
count (tests/dashboards/handcount.py) written as a person writes it (tests/dashboards/readable.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from broker.contract import WEB_DEVICE
from dashboards.boards import all_dashboards
from dashboards.channels import CHANNEL_LABELS
from dashboards.grafana import NO_DATA
from dashboards.queries import LABELS
from dashboards.settings import DashboardSettings
from storage.influxql import InfluxQL
from tests.support.tally import Tally

from .conftest import ScenarioWorld
from .grafana_backend import TimeRange
from .grafana_frontend import Shown, show_panel
from .handcount import HandCount, Selection, day_start_ms, monday_ms, within
from .handcount import chosen as in_selection
from .readable import DASH, audit, count, local_time, pct, reasons, web_delay_texts
from .scenario import CENTRES, FIRST, PROVINCES, ZERO_DAY
from .seed import TZ, ms
from .test_panels import CHECKS as SEED_CHECKS
from .truth import shared_ranks

L = LABELS
BOARDS = ("hl-centre", "hl-officer", "hl-province", "hl-integrity")
RANGES = {"zero day": (ZERO_DAY[2], ZERO_DAY[2] + 1), "W45": (0, 7), "W46": (7, 14), "W47": (14, 21),
          "3 weeks": (0, 21)}
WEEKDAYS = {1: "Thứ 2", 2: "Thứ 3", 3: "Thứ 4", 4: "Thứ 5", 5: "Thứ 6", 6: "Thứ 7", 7: "Chủ nhật"}
AUDITED: Counter[str] = Counter()  # board uid -> displayed cells checked for a readable form
SEEN: Counter[str] = Counter()  # "0 %", "100 %", "tie", "—" cells met, per board


def _every_board_and_edge_case(cells: Counter[str]) -> None:
    """The numbers of cells, and that 0 %, 100 %, ties and '—' were all met."""
    for uid in BOARDS:
        assert cells[uid] > 500, f"{uid}: only {cells[uid]} cells compared"
        assert AUDITED[uid] >= cells[uid] // 2, f"{uid}: only {AUDITED[uid]} displayed cells audited"
    for what in ("hl-centre 0 %", "hl-centre 100 %", "hl-officer 0 %", "hl-officer 100 %", "hl-officer tie",
                 "hl-integrity 0 %", "hl-integrity 100 %", "hl-integrity top run", "hl-integrity disagreement",
                 "hl-integrity duplicate"):
        assert SEEN[what] > 0, f"edge case {what!r} never met ({dict(SEEN)})"


def selections(centre: str) -> dict[str, Selection]:
    """Single, multi and All choices of the multi-valued variables, for one centre."""
    officers = CENTRES[centre]
    return {
        "all": {},
        "one officer": {"officer": [officers[0]]},
        "two officers": {"officer": list(officers[:2])},
        "one counter": {"counter": [ZERO_DAY[1]]},
        "two counters, one service": {"counter": ["q1", "q2"], "service": ["ho-tich"]},
        "every variable single": {"province": [PROVINCES[centre]], "counter": ["q1"], "officer": [officers[0]],
                                  "service": ["dat-dai"]},
        "both services": {"service": ["ho-tich", "dat-dai"]},
    }


@dataclass
class View:
    """One panel as Grafana shows it for one selection and range, with the hand count to compare."""

    uid: str
    hc: HandCount
    settings: DashboardSettings
    panel: dict[str, Any]
    sel: Selection
    start: int
    end: int
    table: Shown

    def cell(self, shown: str, want: str, what: str) -> None:
        """One displayed cell against what a person should read there."""
        assert shown == want, f"{what}: shown {shown!r}, hand count {want!r}"
        if want == DASH:
            SEEN[f"{self.uid} —"] += 1
        elif want in ("0.0%", "100.0%"):
            SEEN[f"{self.uid} {'0 %' if want == '0.0%' else '100 %'}"] += 1
        CELLS[self.uid] += 1

    def rows_by(self, *cols: str) -> dict[tuple[Any, ...], dict[str, str]]:
        """Displayed text of each row, by the raw values of ``cols`` (one row per group)."""
        out = {tuple(r[c] for c in cols): t for r, t in zip(self.table.rows, self.table.text, strict=True)}
        assert len(out) == len(self.table.rows), "one row per group"
        return out

    def keys(self, *names: str) -> Selection:
        return {k: v for k, v in self.sel.items() if k in names}


# --------------------------------------------------------------------------- checks, one per kind of panel

def check_stat(v: View) -> None:
    want = v.hc.ratios(v.start, v.end, v.sel).get(())
    response = v.panel["options"]["reduceOptions"]["fields"] == "/^response_rate$/"
    if want is None or (not response and want.rated == 0):
        expected = NO_DATA  # nothing rated (nor served): the queries return no series
    else:
        expected = pct(want.rated, want.served) if response else pct(want.satisfied, want.rated)
    assert len(v.table.stat) == 1, v.table.stat
    v.cell(v.table.stat[0], expected, "stat")


def check_ratio_table(v: View, group: str) -> None:
    want = v.hc.ratios(v.start, v.end, v.sel, (group,))
    got = v.rows_by(L[group])
    assert set(got) == set(want), (set(got), set(want))
    for k, w in want.items():
        row = got[k]
        for col, expected in (("rated", count(w.rated)), ("satisfied", count(w.satisfied)),
                              ("not_satisfied", count(w.not_satisfied)), ("served", count(w.served)),
                              ("ratio", pct(w.satisfied, w.rated)), ("response_rate", pct(w.rated, w.served))):
            v.cell(row[L[col]], expected, f"{k} {col}")
    shown = [r[L["ratio"]] for r in v.table.rows]
    numbers = [x for x in shown if not math.isnan(x)]
    assert numbers == sorted(numbers, reverse=True) and shown[:len(numbers)] == numbers, "best first, '—' last"


def check_ranking(v: View, label: str, min_sample: int) -> None:
    """Shared rank (1, 1, 3) within the one selected centre/province; a tie is one line listing its members,
    with the line's totals of n and served and the response rate of those totals."""
    scope = v.keys("province", "centre", "service")  # counter/officer choices never narrow a ranking
    want = {k[0]: w for k, w in v.hc.ratios(v.start, v.end, scope, (label,)).items() if w.rated >= min_sample
            and w.rated > 0}
    ranks = shared_ranks({k: w.satisfied / w.rated for k, w in want.items()})
    members_seen: set[str] = set()
    for row, text in zip(v.table.rows, v.table.text, strict=True):
        members = row[L[label]]
        assert set(members) <= set(want), set(members) - set(want)
        if len(members) > 1:
            SEEN[f"{v.uid} tie"] += 1
        members_seen |= set(members)
        first = want[members[0]]
        rated, served = sum(want[m].rated for m in members), sum(want[m].served for m in members)
        assert {ranks[m] for m in members} == {ranks[members[0]]}, "a line is one rank"
        for shown, expected, what in ((text["Hạng"], str(ranks[members[0]]), "rank"),
                                      (text[L[label]], ", ".join(members), "members"),
                                      (text[L["ratio"]], pct(first.satisfied, first.rated), "ratio"),
                                      (text[L["rated"]], count(rated), "n"),
                                      (text[L["served"]], count(served), "served"),
                                      (text[L["response_rate"]], pct(rated, served), "response")):
            v.cell(shown, expected, f"{members} {what}")
    assert members_seen == set(want), (members_seen, set(want))
    assert [r["Hạng"] for r in v.table.rows] == sorted(r["Hạng"] for r in v.table.rows), "rank order"
    if label == "officer":
        assert {v.sel["centre"][0]} == {r.centre for r in v.hc.ratings if r.officer in members_seen} \
            or not members_seen, "officers of one centre only"


CLASS_NAMES = {"very_satisfied": "Rất hài lòng", "satisfied": "Hài lòng (gồm Bình thường)",
               "not_satisfied": "Không hài lòng"}  # the legal classes as a person reads them


def check_by_class(v: View) -> None:
    want = v.hc.by_class(v.start, v.end, v.sel)
    got = {t[L["class"]]: t["n"] for t in v.table.text}
    assert set(got) == {CLASS_NAMES[c] for c in want}, "classes shown by their Vietnamese names"
    for cls, n in want.items():
        v.cell(got[CLASS_NAMES[cls]], count(n), cls)


def check_heatmap(v: View) -> None:
    want = v.hc.heatmap(v.start, v.end, v.sel)
    got = {(row["Giờ"], day): n for row in v.table.text for day, n in row.items() if day != "Giờ" and n}
    assert set(got) == {(h, WEEKDAYS[d]) for h, d in want}
    for (hour, day), n in want.items():
        v.cell(got[(hour, WEEKDAYS[day])], count(n), f"{hour} {day}")


def check_live(v: View) -> None:
    want = v.hc.live_not_satisfied(v.start, v.end, v.sel)
    assert len(v.table.rows) == len(want)
    for row, r in zip(v.table.text, want, strict=True):
        assert (row["Thời điểm"], row["Quầy"], row["Cán bộ"], row["Vé"], row["Lý do"], row["Điểm"]) == (
            local_time(r.time_ns // 1_000_000, TZ.key), r.counter, r.officer, r.ticket or DASH,
            reasons(r.reasons), count(r.score)), row
        CELLS[v.uid] += 6


def check_devices(v: View) -> None:
    want = v.hc.devices_online(v.start, v.end, v.sel.get("centre"))
    got = {r["Thiết bị"]: r["Trực tuyến"] for r in v.table.rows}
    assert got == want
    shown = {r["Thiết bị"]: r["Trực tuyến"] for r in v.table.text}
    assert shown == {d: "Trực tuyến" if on else "Ngoại tuyến" for d, on in want.items()}
    CELLS[v.uid] += len(want)


def check_trend(v: View) -> None:
    centre = v.keys("province", "centre", "service")
    assert len(centre.get("centre") or []) == 1, "the centre line is one centre"
    officer, whole = v.hc.weekly(v.start, v.end, v.sel), v.hc.weekly(v.start, v.end, centre)
    got = v.rows_by("Time")
    assert set(got) == {(w,) for w in whole}, "one point per week with a rated ticket in the centre"
    for week, w in whole.items():
        mine = officer.get(week)
        v.cell(got[(week,)]["Cán bộ"], pct(mine.satisfied, mine.rated) if mine else DASH, f"week {week} officer")
        v.cell(got[(week,)]["Trung tâm"], pct(w.satisfied, w.rated), f"week {week} centre")


def check_reasons(v: View) -> None:
    want = v.hc.reasons(v.start, v.end, v.sel)
    assert len(v.table.rows) == (1 if want else 0)
    for code, label in v.settings.reasons.items():
        if v.table.rows:
            v.cell(v.table.text[0].get(label, ""), count(want.get(code)), code)  # a reason never given: no bar


def check_walkup(v: View) -> None:
    want = v.hc.per_counter(v.start, v.end, v.sel)
    got = v.rows_by("Trung tâm", "Quầy")
    assert set(got) == set(want), (set(got), set(want))
    for k, (n, walk) in want.items():
        for col, expected in (("Tất cả", count(n)), ("Không vé", count(walk)), ("Tỷ lệ không vé", pct(walk, n))):
            v.cell(got[k][col], expected, f"{k} {col}")


def check_fast(v: View) -> None:
    want = v.hc.fast(v.start, v.end, v.sel)
    got = v.rows_by("Trung tâm", "Quầy", "Cán bộ")
    assert set(got) == set(want), (set(got), set(want))
    for k, (n, quick) in want.items():
        for col, expected in ((L["rated"], count(n)), ("Dưới 1 giây", count(quick)),
                              ("Tỷ lệ dưới 1 giây", pct(quick, n))):
            v.cell(got[k][col], expected, f"{k} {col}")


def check_top_runs(v: View) -> None:
    want = v.hc.top_windows(v.start, v.end, v.sel, v.settings.top_run_length)
    got = v.rows_by("Trung tâm", "Cán bộ")
    assert set(got) == set(want), (set(got), set(want))
    for k, n in want.items():
        v.cell(got[k]["Số cửa sổ"], count(n), f"{k} windows")
        SEEN[f"{v.uid} top run"] += 1


def check_disagreement(v: View) -> None:
    want = v.hc.disagreements(v.start, v.end, v.sel)
    got = v.rows_by("Trung tâm", "Quầy", "Cán bộ (theo QMS)")
    assert set(got) == set(want), (set(got), set(want))
    for k, (n, other) in want.items():
        SEEN[f"{v.uid} disagreement"] += 1
        for col, expected in ((L["rated"], count(n)), ("Khác cán bộ", count(other)), ("Tỷ lệ khác", pct(other, n))):
            v.cell(got[k][col], expected, f"{k} {col}")


def check_ticket_rejections(v: View) -> None:
    """Double presses and re-ratings after a recall are ``duplicate_ticket``, per counter and terminal.

    A ``rejected`` point carries centre, counter, device and reason only (no province, officer or
    service: a refused rating is attributed to no one), so only the centre and counter choices narrow it.
    """
    want = v.hc.ticket_rejections(v.start, v.end, v.sel)
    got = {k: r["Số lần"] for k, r in v.rows_by("Trung tâm", "Quầy", "Thiết bị", "Lý do").items()}
    if set(v.sel) - {"centre", "counter"} and any(v.sel.get(k) for k in ("province", "officer", "service")):
        # a province/officer/service choice hides every rejection (the tag is absent): none invented
        assert set(got) <= set(want), set(got) - set(want)
    else:
        assert set(got) == set(want), (set(got) ^ set(want))
    for k, n in got.items():
        v.cell(n, count(want[k]), f"{k} rejections")
        SEEN[f"{v.uid} duplicate"] += 1


def check_late(v: View) -> None:
    """The scenario is stored as the ingest stores it, without escalations: no late complaint
    (test_alerts_ingest.py sends one through the real ingest and reads this panel)."""
    assert v.table.rows == [] and v.table.text == []


def check_channels(v: View, group: tuple[str, ...]) -> None:
    """Counter vs web per group: the scenario's terminals are the counter channel (device "web" is the web's)."""
    rated = v.hc.rated(v.start, v.end, v.sel)
    counter = Counter(tuple(getattr(r, g) for g in group) for r in rated if r.device != WEB_DEVICE)
    web = Counter(tuple(getattr(r, g) for g in group) for r in rated if r.device == WEB_DEVICE)
    served = Counter(tuple(getattr(t, g) for g in group) for t in v.hc.served
                     if within(t.time_ns, v.start, v.end) and in_selection(t, v.sel))
    got = v.rows_by(*(CHANNEL_LABELS[g] for g in group))
    assert set(got) == set(counter) | set(web) | set(served), (set(got), set(counter) | set(web) | set(served))
    C = CHANNEL_LABELS
    for k, row in got.items():
        c, w, n = counter[k], web[k], counter[k] + web[k]
        for col, expected in ((C["counter_rated"], count(c)), (C["web_rated"], count(w)), (C["rated"], count(n)),
                              (C["web_share"], pct(w, n)), (C["served"], count(served[k])),
                              (C["counter_response"], pct(c, served[k])), (C["web_response"], pct(w, served[k])),
                              (C["response_rate"], pct(n, served[k]))):
            v.cell(row[col], expected, f"{k} {col}")


def check_web_delay(v: View) -> None:
    delays = [r.response_ms for r in v.hc.rated(v.start, v.end, v.sel) if r.device == WEB_DEVICE]
    assert v.table.stat == ([NO_DATA] if not delays else web_delay_texts([d or 0 for d in delays])), v.table.stat
    CELLS[v.uid] += 1


def check_no_web(v: View) -> None:
    """The field scenario has no web rating (tests/dashboards/test_channels.py sends them through the ingest)."""
    assert not any(r.device == WEB_DEVICE for r in v.hc.ratings) and not any(
        r.device == WEB_DEVICE for r in v.hc.refused)
    assert v.table.rows == [], v.table.text


CHECKS: dict[str, Callable[[View], None]] = {
    "centre.ratio_today": check_stat, "centre.ratio_week": check_stat,
    "centre.response_today": check_stat, "centre.response_week": check_stat,
    "centre.by_class": check_by_class,
    "centre.by_counter": lambda v: check_ratio_table(v, "counter"),
    "centre.by_service": lambda v: check_ratio_table(v, "service"),
    "centre.heatmap": check_heatmap, "centre.live_not_satisfied": check_live, "centre.devices_online": check_devices,
    "officer.weekly_trend": check_trend, "officer.ratio": check_stat, "officer.response": check_stat,
    "officer.by_class": check_by_class, "officer.reasons": check_reasons,
    "officer.ranking": lambda v: check_ranking(v, "officer", v.settings.min_sample),
    "province.ratio": check_stat, "province.response": check_stat,
    "province.centres": lambda v: check_ranking(v, "centre", 0),
    "integrity.walkup": check_walkup, "integrity.fast": check_fast, "integrity.top_runs": check_top_runs,
    "integrity.disagreement": check_disagreement, "integrity.ticket_rejections": check_ticket_rejections,
    "integrity.late": check_late,
    "centre.channels": lambda v: check_channels(v, ()), "officer.channels": lambda v: check_channels(v, ("officer",)),
    "centre.web_delay": check_web_delay, "officer.web_delay": check_web_delay,
    "integrity.web_sources": check_no_web, "integrity.web_refusals": check_no_web,
}


# --------------------------------------------------------------------------- running them

def boards(s: DashboardSettings) -> dict[str, tuple[Any, dict[str, Any]]]:
    return {b.uid: (b, b.to_json(s.datasource_uid)) for b in all_dashboards(s)}


def modes(uid: str, s: DashboardSettings) -> list[str]:
    raw = s.model_copy(update={"use_rollups": False})
    return ["rollup", "raw"] if boards(s)[uid][1] != boards(raw)[uid][1] else ["raw"]


def panel_start(panel: dict[str, Any], start: int, now: datetime) -> int:
    """A panel's own relative time: today (now/d) or this ISO week (now/w) in the centre's zone."""
    rel = panel.get("timeFrom")
    if rel == "now/d":
        return day_start_ms(ms(now) * 1_000_000)
    if rel == "now/w":
        return monday_ms(ms(now) * 1_000_000)
    assert not rel, rel
    return start


def one_value_each(board_json: dict[str, Any], sel: Selection) -> list[Selection]:
    """Variables the board does not have do not apply; a single-valued one (no All) is repeated per value."""
    names = {v["name"]: v for v in board_json["templating"]["list"]}
    base = {k: v for k, v in sel.items() if k in names}
    out = [base]
    for name, var in names.items():
        if var["type"] == "query" and not var["multi"]:
            values = sorted(set(PROVINCES.values())) if name == "province" else sorted(CENTRES)
            out = [s | {name: [value]} for s in out for value in values]
    return out


# the centre board reads raw points only; the officer and province boards have both modes
def centre_choices(board_json: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    """Each centre; where the centre variable is multi-valued also two centres and All."""
    multi = any(v["name"] == "centre" and v.get("multi") for v in board_json["templating"]["list"])
    many: list[tuple[str, list[str] | None]] = [("c-tt", ["c-tt", "c-hl"]), ("c-pd", None)] if multi else []
    return [(c, [c]) for c in sorted(CENTRES)] + many


CASES = [(uid, mode, rng) for uid in BOARDS for mode in modes(uid, DashboardSettings()) for rng in RANGES]
# every case compares cells into PANELS.counts (board uid -> cells); checked at the session's end
PANELS = Tally("scenario panels", len(CASES), _every_board_and_edge_case)
CELLS = PANELS.counts


def run_board(db: InfluxQL, s: DashboardSettings, hc: HandCount, uid: str, start: int,
              end: int) -> tuple[int, list[str]]:
    """Every panel of board ``uid`` for every centre and selection on [start, end] -> (views run, differences)."""
    board, js = boards(s)[uid]
    now = datetime.fromtimestamp(end / 1000, TZ)
    failures: list[str] = []
    runs = 0
    for spec, panel in zip(board.panels, js["panels"], strict=True):
        seen: list[Selection] = []
        for centre, chosen in centre_choices(js):
            for name, choice in selections(centre).items():
                for sel in one_value_each(js, {**choice, "centre": chosen}):
                    if sel in seen:
                        continue
                    seen.append(sel)
                    table = show_panel(db, js, panel, TimeRange(start, end), end, sel)
                    view = View(uid, hc, s, panel, sel, panel_start(panel, start, now), end, table)
                    runs += 1
                    try:
                        AUDITED[uid] += audit(f"{spec.key} {sel}", panel, table)
                        CHECKS[spec.key](view)
                    except (AssertionError, KeyError, TypeError) as exc:  # a missing column is a difference too
                        failures.append(f"{spec.key} [{name}] {sel}: {exc}")
    return runs, failures


@pytest.mark.parametrize(("uid", "mode", "rng"), CASES, ids=[f"{u}-{m}-{r}" for u, m, r in CASES])
def test_panels_equal_the_hand_count(scenario_world: ScenarioWorld, uid: str, mode: str, rng: str) -> None:
    s = scenario_world.settings.model_copy(update={"use_rollups": mode == "rollup"})
    a, b = RANGES[rng]
    start, end = ms(FIRST + timedelta(days=a)), ms(FIRST + timedelta(days=b)) - 1
    runs, failures = run_board(scenario_world.db, s, HandCount.of(scenario_world.scenario), uid, start, end)
    assert runs > 0
    assert not failures, f"{len(failures)} of {runs} panel views differ:\n" + "\n".join(failures[:15])
    PANELS.fed()


def test_every_panel_has_a_scenario_check(scenario_world: ScenarioWorld) -> None:
    """Every panel of these boards is checked here; every other panel has a check in test_panels.py."""
    s = scenario_world.settings
    for b in all_dashboards(s):
        keys = {p.key for p in b.panels}
        if b.uid in BOARDS:
            assert keys <= set(CHECKS), f"{b.uid}: panels without a scenario check: {keys - set(CHECKS)}"
        assert keys <= set(CHECKS) | set(SEED_CHECKS), keys - set(CHECKS) - set(SEED_CHECKS)
    assert set(CHECKS) == {p.key for b in all_dashboards(s) if b.uid in BOARDS for p in b.panels}
    assert {(u, m) for u, m, _ in CASES} >= {("hl-officer", "rollup"), ("hl-officer", "raw"),
                                              ("hl-province", "rollup"), ("hl-province", "raw")}
