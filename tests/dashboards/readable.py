"""What a person should read in a panel cell, written down independently of Grafana's code.

The dashboard tests compare what @grafana/data displays (tests/dashboards/grafana_frontend.py) with
these: a ratio is a percent with one decimal, rounded half up from the exact fraction ("89.7%");
a ratio of nothing is "—"; a count is a whole number ("45"); a time is the centre's local
date and time; a stat with no data says so in Vietnamese. :func:`audit` checks every cell of a
panel against these forms, whatever the panel.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from broker import ratingscale
from dashboards.grafana import NO_DATA

from .grafana_frontend import Shown

DASH = "—"
PERCENT = re.compile(r"^\d{1,3}\.\d%$")
INTEGER = re.compile(r"^-?\d+$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
RAW = re.compile(r"^-?\d*\.\d+$|NaN|undefined|Infinity|\[object|^\[|^\{|^true$|^false$")  # no person reads these


def pct(num: int | Fraction | None, den: int | None = None) -> str:
    """``num / den`` as a person writes it: "89.7%"; nothing to divide by -> "—"."""
    if num is None or den == 0:
        return DASH
    x = Fraction(num) if den is None else Fraction(num, den)
    shown = (Decimal(x.numerator) * 100 / Decimal(x.denominator)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{shown}%"


def count(n: int | None) -> str:
    return "" if n is None else str(int(n))


def local_time(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def audit(what: str, panel: dict[str, Any], shown: Shown) -> int:
    """Every displayed cell is in a form a person reads; returns the number of cells looked at.

    A ratio column (a percent override) shows "89.7%" or "—"; any other number is a whole number;
    a time column a local date and time; a number mapped to words (a delay) one of the panel's own texts;
    nothing shows a raw fraction, NaN, undefined, an array or
    a JavaScript boolean.
    """
    percent_cols = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]
                    if {"id": "unit", "value": "percentunit"} in o["properties"]}
    whole_panel_percent = panel["fieldConfig"]["defaults"].get("unit") == "percentunit"
    # a number a value mapping turns into words ("3 giờ", "2,1 ngày"): the panel's own texts
    mapped = {m["options"]["result"]["text"] for m in panel["fieldConfig"]["defaults"].get("mappings", [])
              if m["type"] == "range"}
    cells = 0
    # a stat panel shows its reduced value only (its table is not on the screen)
    for raw_row, text_row in zip(shown.rows, shown.text, strict=True) if panel["type"] != "stat" else ():
        for col, text in text_row.items():
            value = raw_row.get(col)
            cells += 1
            where = f"{what} [{col}] shows {text!r} (value {value!r})"
            assert not RAW.search(text), where
            if col in percent_cols or (whole_panel_percent and col != "Time"):
                assert PERCENT.match(text) or text == DASH, where
            elif isinstance(value, float | int) and not isinstance(value, bool) and col not in ("Time",):
                kind = next((f["type"] for f in shown.frames[0]["fields"] if f["name"] == col), "number")
                if kind == "time":
                    assert DATETIME.match(text), where
                else:
                    assert INTEGER.match(text) or text == DASH or text in mapped, where
            elif col == "Time" or col.startswith("Thời điểm") or col.startswith("Lần cuối"):
                assert DATETIME.match(text) or text == "", where
    for text in shown.stat:
        cells += 1
        assert not RAW.search(text), f"{what} stat shows {text!r}"
        if whole_panel_percent:
            assert PERCENT.match(text) or text in (DASH, NO_DATA), f"{what} stat shows {text!r}"
        else:
            assert INTEGER.match(text) or text == NO_DATA or text in mapped, f"{what} stat shows {text!r}"
    return cells


def _half_up(x: Decimal, places: int = 0) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def duration(seconds: float) -> str:
    """A delay as a person says it: under a minute, whole minutes, whole hours, days with one decimal (a
    Vietnamese decimal comma) below 10 days, whole days to 30, then "trên 30 ngày"; each rounded half up
    and moving to the larger unit when the rounding reaches it (59.5 min is "1 giờ")."""
    s = Decimal(seconds)
    if s < 30:
        return "dưới 1 phút"
    if (m := _half_up(s / 60)) < 60:
        return f"{m} phút"
    if (h := _half_up(s / 3600)) < 24:
        return f"{h} giờ"
    if (d1 := _half_up(s / 86400, 1)) < 10:
        return f"{d1}".replace(".", ",") + " ngày"
    d = _half_up(s / 86400)
    return f"{d} ngày" if d <= 30 else "trên 30 ngày"


def web_delay_texts(delays_ms: list[int]) -> list[str]:
    """The median (the mean of the two middle values for an even count) and the 90th percentile (nearest
    rank: the value at rank floor(0.9·n + 0.5), InfluxDB's percentile()) of the delays, as a person reads them."""
    xs = sorted(delays_ms)
    n = len(xs)
    median = Fraction(xs[n // 2]) if n % 2 else Fraction(xs[n // 2 - 1] + xs[n // 2], 2)
    p90 = xs[int(Decimal(n) * Decimal("0.9") + Decimal("0.5")) - 1]
    return [duration(float(median / 1000)), duration(p90 / 1000)]


def reasons(codes: tuple[str, ...] | list[str]) -> str:
    """A rating's low-score reasons as the terminal showed them: the catalogue's (broker/ratingscale) Vietnamese
    labels, in the catalogue's order whatever order they were tapped in, joined by ", "; none -> "—"."""
    if not codes:
        return DASH
    vi = ratingscale.words("vi")["reasons"]["codes"]
    assert set(codes) <= set(vi), f"codes outside the catalogue: {set(codes) - set(vi)}"
    return ", ".join(label for code, label in vi.items() if code in codes)
