"""The live "Không hài lòng" table shows the reasons as the terminal showed them (the catalogue's labels), never
as codes: its reason-list value mappings run through Grafana's own frontend code (@grafana/data) on every
list a citizen can give, in every tap order."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from broker import ratingscale
from dashboards.boards import centre_overview
from dashboards.reasons import ALL_SETS_UP_TO, LARGEST_SET, reason_mappings
from dashboards.settings import DashboardSettings

from .grafana_frontend import render_panel
from .readable import reasons

CODES = tuple(ratingscale.words("vi")["reasons"]["codes"])


def _live(s: DashboardSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    board = centre_overview(s)
    js = board.to_json(s.datasource_uid)
    (panel,) = [p for spec, p in zip(board.panels, js["panels"], strict=True)
                if spec.key == "centre.live_not_satisfied"]
    return js, panel


def _shown(js: dict[str, Any], panel: dict[str, Any], lists: list[str]) -> list[str]:
    """The "Lý do" cells Grafana prints for stored reason lists (the field as the InfluxQL backend names it)."""
    frame = {"refId": "A", "fields": [{"name": "reasons", "type": "string", "config": {}, "values": lists}]}
    return [row["Lý do"] for row in render_panel(js, panel, [frame]).text]


def test_every_reason_list_in_every_order_reads_as_the_catalogue() -> None:
    js, panel = _live(DashboardSettings())
    lists = [",".join(p) for n in range(1, len(CODES) + 1) for p in permutations(CODES, n)]
    assert len(lists) == 1956  # 6 codes: every non-empty list in every order
    shown = _shown(js, panel, lists)
    assert shown == [reasons(x.split(",")) for x in lists]
    assert shown[lists.index("thoi_gian_cho,thai_do")] == "Thái độ cán bộ, Thời gian chờ lâu"
    assert not any("_" in text for text in shown), "no code left"


def test_lookalikes_are_not_translated() -> None:
    """Only a whole list of configured codes is translated: a longer code, a repeated code, a stray comma or an
    empty list is not passed off as the catalogue's words."""
    js, panel = _live(DashboardSettings())
    odd = ["thai_do_x", "xthai_do", "thai_do,thai_do", "thai_do,", ",thai_do", "thai_do,di_lai,unknown_code"]
    assert _shown(js, panel, odd) == odd
    assert _shown(js, panel, [""]) == ["—"]  # no reason given: a dash, as the table's other empty cells


def test_the_mappings_follow_the_configured_codes() -> None:
    s = DashboardSettings(reasons={c: "x" for c in CODES[:3]})
    js, panel = _live(s)
    assert len(panel["fieldConfig"]["overrides"][-1]["properties"][0]["value"]) == 7  # 2^3 - 1 sets
    # the labels are the catalogue's whatever the dashboards' settings call them
    assert _shown(js, panel, ["huong_dan,thai_do", "di_lai"]) == ["Thái độ cán bộ, Hướng dẫn chưa rõ", "di_lai"]
    many = [f"code_{i}" for i in range(ALL_SETS_UP_TO + 2)]
    mappings = reason_mappings(many)
    assert len(mappings) == 10 + 45 + 120 and LARGEST_SET == 3  # sets of at most 3 of 10 codes
