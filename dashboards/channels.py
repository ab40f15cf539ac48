"""Rating channels: at the counter (the terminal's touch screen or buttons) and later from a phone (web).

A web rating is stored like a terminal's (storage/schema.py): the same ``rating`` measurement, the
officer, service and counter of the ticket's QMS close, and the tag ``device`` = ``web`` (the web
service publishes under that one device id, broker.contract.WEB_DEVICE); its ``input`` field is
"web", ``source`` says how the link reached the citizen and ``response_ms`` is the time from the
ticket's close to the rating (the ingest computes it from the close it bound the rating to). The
channel is read from the ``device`` TAG, not the ``input`` field: a tag can be filtered in the daily
rollups too (``rating_1d`` keeps every tag), a field cannot.

One rating per ticket across channels is the ingest's rule (a second rating of a ticket through any
channel is refused as ``duplicate_ticket``), so rated = counter + web counts a ticket once, and the
overall response rate is rated / served.

The web's delay after the close is shown as a person says it ("45 phút", "3 giờ", "2,1 ngày"), never
as raw seconds: Grafana has no Vietnamese duration unit, so the stat carries range value mappings
generated from :func:`delay_buckets`, the same table :func:`delay_text` (the weekly report) reads.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from broker.contract import WEB_DEVICE
from storage.schema import Field, Measurement, Tag

from .grafana import Panel, Target, Transform, binary, merge, organize, sort_by
from .queries import LABELS, NOT_WALKUP, RATED, SERVED, count_query, null_safe, raw, served_query, tag_filters

IS_WEB = f"\"{Tag.DEVICE}\" = '{WEB_DEVICE}'"
NOT_WEB = f"\"{Tag.DEVICE}\" != '{WEB_DEVICE}'"

# column names of the channel panels
COUNTER_RATED = "counter_rated"  # rated at the terminal (touch or buttons)
WEB_RATED = "web_rated"  # rated later from a phone
COUNTER_RESPONSE = "counter_response"  # counter_rated / served
WEB_RESPONSE = "web_response"  # web_rated / served
RESPONSE = "response_rate"  # (counter_rated + web_rated) / served: a ticket counts once
WEB_SHARE = "web_share"  # web_rated / rated

CHANNEL_LABELS: dict[str, str] = {
    COUNTER_RATED: "Tại quầy (lượt)", WEB_RATED: "Qua web (lượt)", RATED: LABELS[RATED], SERVED: LABELS[SERVED],
    WEB_SHARE: "Tỷ lệ qua web", COUNTER_RESPONSE: "Phản hồi tại quầy", WEB_RESPONSE: "Phản hồi qua web",
    RESPONSE: "Tỷ lệ phản hồi (chung)", Tag.OFFICER: LABELS[Tag.OFFICER], Tag.COUNTER: LABELS[Tag.COUNTER],
}
CHANNEL_PERCENT = tuple(CHANNEL_LABELS[c] for c in (WEB_SHARE, COUNTER_RESPONSE, WEB_RESPONSE, RESPONSE))
CHANNEL_HIDDEN = ("Time", raw(COUNTER_RATED), raw(WEB_RATED), raw(SERVED))


def channel_rated_query(keys: tuple[str, ...], channel: str, group: tuple[str, ...] = (), alias: str = "",
                        rollup: bool = False) -> str:
    """Rated tickets of one channel ("counter" or "web"); ``rollup`` reads ``rating_1d`` (it keeps the device
    tag; the centre-level rollup does not)."""
    cond = f"{NOT_WALKUP} AND {IS_WEB if channel == 'web' else NOT_WEB}"
    alias = alias or (WEB_RATED if channel == "web" else COUNTER_RATED)
    if rollup:
        return count_query(Measurement.RATING_1D, Field.N, alias, keys, cond, group, agg="sum")
    return count_query(Measurement.RATING, Field.SCORE, alias, keys, cond, group)


def channel_targets(keys: tuple[str, ...], group: tuple[str, ...] = (), rollup: bool = False) -> tuple[Target, ...]:
    return (Target("A", channel_rated_query(keys, "counter", group, raw(COUNTER_RATED), rollup)),
            Target("B", channel_rated_query(keys, "web", group, raw(WEB_RATED), rollup)),
            Target("C", served_query(keys, group, rollup, alias=raw(SERVED))))


def channel_transforms() -> tuple[Transform, ...]:
    """Counts per channel (0 where a query had no row), their sum, the web's share and the response rates."""
    return (merge(), *null_safe(COUNTER_RATED, WEB_RATED, SERVED),
            binary(COUNTER_RATED, "+", WEB_RATED, RATED),
            binary(WEB_RATED, "/", RATED, WEB_SHARE),
            binary(COUNTER_RATED, "/", SERVED, COUNTER_RESPONSE),
            binary(WEB_RATED, "/", SERVED, WEB_RESPONSE),
            binary(RATED, "/", SERVED, RESPONSE))


def channel_table(key: str, title: str, description: str, keys: tuple[str, ...], group: tuple[str, ...] = (),
                  rollup: bool = False, width: int = 24) -> Panel:
    """Counter vs web per ``group`` (one row when empty): counts, the web's share, response rate per channel."""
    order = (*group, COUNTER_RATED, WEB_RATED, RATED, WEB_SHARE, SERVED, COUNTER_RESPONSE, WEB_RESPONSE, RESPONSE)
    return Panel(key, "table", title,
                 f"{description} Counter = the terminal's touch screen or buttons; web = the QR/SMS/Zalo link on the "
                 "citizen's phone. A ticket is rated once across channels (a second rating is refused as "
                 "duplicate_ticket), so the overall response rate = (counter + web) / served tickets.",
                 channel_targets(keys, group, rollup),
                 (*channel_transforms(), *((sort_by(group[0], desc=False),) if group else ()),
                  organize({k: CHANNEL_LABELS[k] for k in order}, exclude=CHANNEL_HIDDEN, order=order)),
                 width=width, height=7, percent=CHANNEL_PERCENT)


# ---------------------------------------------------------------------- the web's delay after the close

MINUTE, HOUR, DAY = 60, 3600, 86400


def _days(d: Decimal) -> str:
    return f"{d:.1f}".replace(".", ",") + " ngày"


def delay_buckets() -> list[tuple[float, float | None, str]]:
    """``[from, to)`` seconds -> the text a person reads, contiguous from 0 (the last is open).

    Under a minute: "dưới 1 phút"; then whole minutes (half up) to "59 phút"; whole hours to "23 giờ";
    days with one decimal to "9,9 ngày" (Vietnamese decimal comma); whole days to "30 ngày"; beyond,
    "trên 30 ngày" (a link expires 7 days after the close by default). A value is shown by the bucket
    it falls in, so rounding never jumps back a unit.
    """
    upper: list[tuple[Decimal, str]] = [(Decimal(30), "dưới 1 phút")]  # (where the text ends, the text)
    upper += [((m + Decimal("0.5")) * MINUTE, f"{m} phút") for m in range(1, 60)]
    upper += [((h + Decimal("0.5")) * HOUR, f"{h} giờ") for h in range(1, 24)]
    upper += [((Decimal(t) / 10 + Decimal("0.05")) * DAY, _days(Decimal(t) / 10)) for t in range(10, 100)]
    upper += [((d + Decimal("0.5")) * DAY, f"{d} ngày") for d in range(10, 31)]
    out: list[tuple[float, float | None, str]] = []
    lo = Decimal(0)
    for hi, text in upper:  # each bucket starts where the one before ends: no gap, no overlap
        out.append((float(lo), float(hi), text))
        lo = hi
    out.append((float(lo), None, "trên 30 ngày"))
    return out


def delay_text(seconds: float | None) -> str:
    """A delay as a person reads it ("3 giờ", "2,1 ngày"); "—" when there is none."""
    if seconds is None:
        return "—"
    for lo, hi, text in delay_buckets():
        if seconds >= lo and (hi is None or seconds < hi):
            return text
    return delay_buckets()[0][2]  # below 0 cannot happen (the ingest stores max(0, rated - closed))


def delay_mappings() -> list[dict[str, Any]]:
    """Grafana range mappings of :func:`delay_buckets` (Grafana ranges are inclusive: ``to`` ends a hair before
    the next bucket, and the first match wins)."""
    out: list[dict[str, Any]] = []
    for i, (lo, hi, text) in enumerate(delay_buckets()):
        options: dict[str, Any] = {"from": lo, "result": {"text": text, "index": i}}
        if hi is not None:
            options["to"] = hi - 1e-6
        out.append({"type": "range", "options": options})
    return out


DELAY_MEDIAN = "Trung vị"  # the shown names of the two values (the stat prints each under its name)
DELAY_P90 = "90% trong vòng"


def delay_query(keys: tuple[str, ...]) -> str:
    """The web ratings' delay after the ticket's close, in seconds: the median and the 90th percentile.

    median() is InfluxQL's (the mean of the two middle values for an even count); percentile(…, 90) is
    InfluxDB's nearest rank (the value at rank floor(0.9·n + 0.5)), both over the raw ratings.
    """
    ms = Field.RESPONSE_MS
    return (f'SELECT median("{ms}") / 1000 AS "{DELAY_MEDIAN}", percentile("{ms}", 90) / 1000 AS "{DELAY_P90}" '
            f'FROM "{Measurement.RATING}" WHERE $timeFilter AND {NOT_WALKUP} AND {IS_WEB}{tag_filters(keys)}')


def delay_stat(key: str, keys: tuple[str, ...]) -> Panel:
    return Panel(key, "stat", "Đánh giá qua web: thời gian sau khi đóng vé",
                 "Web ratings: the median and the 90th percentile (nearest rank: 90% of web ratings came at most "
                 "this long after their ticket closed) of the time from the ticket's close (the QMS close the "
                 "rating was bound to) to the rating, over the selected range; shown in minutes, hours or days "
                 "as a person says it.",
                 (Target("A", delay_query(keys)),), value_field=f"({DELAY_MEDIAN}|{DELAY_P90})", width=12, height=5,
                 value_mappings=tuple(delay_mappings()))
