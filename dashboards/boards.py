"""The five hailong dashboards: titles in Vietnamese, English in the descriptions.

Each panel's ``key`` names the number it shows; tests/dashboards prove every
one of them against a seeded InfluxDB.
"""

from __future__ import annotations

import dataclasses

from storage.schema import NOT_SATISFIED as NOT_SATISFIED_CLASS
from storage.schema import Field, Measurement, Tag

from .boards_fleet import fleet_health
from .boards_integrity import integrity
from .channels import channel_table, delay_stat
from .grafana import (
    Dashboard,
    Panel,
    Target,
    Transform,
    Variable,
    binary,
    merge,
    organize,
    stable_uid,
)
from .queries import (
    CENTRE_KEYS,
    CLASS_TEXT,
    LABELS,
    ONLINE_TEXT,
    RATED,
    RATING_KEYS,
    RATIO,
    SATISFIED,
    group_clause,
    null_safe,
    ranking_table,
    rated_query,
    ratio_stat,
    ratio_table,
    raw,
    reason_query,
    satisfied_query,
    tag_filters,
)
from .reasons import reason_mappings
from .settings import DashboardSettings
from .variables import tag_variables

WEEKDAYS = {"1": "Thứ 2", "2": "Thứ 3", "3": "Thứ 4", "4": "Thứ 5", "5": "Thứ 6", "6": "Thứ 7", "7": "Chủ nhật"}
WEEK = "1w, 4d"  # InfluxDB weeks start on Thursday (the epoch); +4d makes them ISO weeks (Monday)


ONE_CENTRE = "Within the selected centre only (single-centre variable)."


def centre_overview(s: DashboardSettings) -> Dashboard:
    k = RATING_KEYS
    tz = s.timezone
    heat = Panel(
        "centre.heatmap", "table", "Lượt đánh giá theo giờ và thứ",
        "Rated tickets by hour of day (rows) and weekday (columns), in the centre's time zone.",
        (Target("A", rated_query(k, alias="n", time="1h", tz=tz)),),
        # the hour and the weekday of each bucket, both in the dashboard's zone (formatTime's ``timezone``;
        # without it Grafana formats in each viewer's own zone): Time is copied (Time + 0) and the copy
        # made a time field again, then one is formatted as the weekday, the other as the hour
        (binary("Time", "+", "0", "gio"),
         Transform("convertFieldType", {"fields": {}, "conversions": [{"targetField": "gio",
                                                                       "destinationType": "time"}]}),
         Transform("formatTime", {"timeField": "Time", "outputFormat": "E", "useTimezone": True, "timezone": tz}),
         Transform("formatTime", {"timeField": "gio", "outputFormat": "HH", "useTimezone": True, "timezone": tz}),
         Transform("groupBy", {"fields": {"Time": {"aggregations": [], "operation": "groupby"},
                                          "gio": {"aggregations": [], "operation": "groupby"},
                                          "n": {"aggregations": ["sum"], "operation": "aggregate"}}}),
         Transform("groupingToMatrix", {"columnField": "Time", "rowField": "gio", "valueField": "n (sum)",
                                        "emptyValue": "null"}),
         organize({**WEEKDAYS, "gio\\Time": "Giờ"}, exclude=())),
        width=24, height=10)
    fields = (Tag.COUNTER, Tag.OFFICER, Field.TICKET, Field.DOSSIER, Field.REASONS, Field.SCORE)
    live = Panel(
        "centre.live_not_satisfied", "table", "Không hài lòng — trực tiếp",
        "Latest 'not satisfied' ratings with ticket, dossier and reasons (the labels the terminal showed, from "
        "the one catalogue broker/ratingscale), newest first (walk-ups included).",
        (Target("A", "SELECT " + ", ".join(f'"{f}"' for f in fields) + f' FROM "{Measurement.RATING}" '
                f"WHERE $timeFilter AND \"{Tag.CLASS}\" = '{NOT_SATISFIED_CLASS}'" + tag_filters(k)
                + " ORDER BY time DESC LIMIT 100"),),
        (organize({Tag.COUNTER: "Quầy", Tag.OFFICER: "Cán bộ", Field.TICKET: "Vé", Field.DOSSIER: "Hồ sơ",
                   Field.REASONS: "Lý do", Field.SCORE: "Điểm", "Time": "Thời điểm"}, exclude=()),),
        width=12, height=9, no_value="—", times=("Thời điểm",),  # a walk-up has no ticket, a rating may have no reason
        column_mappings=(("Lý do", tuple(reason_mappings(tuple(s.reasons)))),))  # the terminal's words, not codes
    devices = Panel(
        "centre.devices_online", "table", "Thiết bị trực tuyến",
        "Last reported online state of each terminal in the centre.",
        (Target("A", f'SELECT last("{Field.ONLINE}") AS "{Field.ONLINE}" FROM "{Measurement.DEVICE_STATUS}" '
                "WHERE $timeFilter" + tag_filters((Tag.CENTRE,)) + group_clause((Tag.DEVICE,))),),
        (organize({Tag.DEVICE: "Thiết bị", Field.ONLINE: "Trực tuyến"}),), width=12, height=9,
        value_text=ONLINE_TEXT)
    return Dashboard(
        "hl-centre", "Tổng quan trung tâm",
        "Centre overview: 766-style satisfaction ratio and response rate, counts by class, counter and service, "
        "ratings by channel (counter vs web) and the web's delay after the close. "
        "One centre at a time: counters of different centres are never compared.",
        (
            ratio_stat("centre.ratio_today", "Tỷ lệ hài lòng hôm nay",
                       "Satisfaction ratio today: (rated - not satisfied) / rated tickets.", k, "now/d"),
            ratio_stat("centre.ratio_week", "Tỷ lệ hài lòng tuần này", "Satisfaction ratio this week.", k, "now/w"),
            ratio_stat("centre.response_today", "Tỷ lệ phản hồi hôm nay",
                       "Response rate today: rated tickets / served tickets.", k, "now/d", response=True),
            ratio_stat("centre.response_week", "Tỷ lệ phản hồi tuần này", "Response rate this week.", k, "now/w",
                       response=True),
            Panel("centre.by_class", "barchart", "Số lượt theo mức hài lòng",
                  "Rated tickets per legal class (very satisfied, satisfied, not satisfied).",
                  (Target("A", rated_query(k, (Tag.CLASS,), alias="n")),), (organize(LABELS),), width=8,
                  value_text=CLASS_TEXT),
            ratio_table("centre.by_counter", "Theo quầy",
                        f"Ratio, n and response rate per counter, sorted by ratio (no rank). {ONE_CENTRE}", k,
                        (Tag.COUNTER,)),
            ratio_table("centre.by_service", "Theo lĩnh vực",
                        f"Ratio, n and response rate per service area, sorted by ratio (no rank). {ONE_CENTRE}", k,
                        (Tag.SERVICE,)),
            heat, live, devices,
            channel_table("centre.channels", "Theo kênh đánh giá: tại quầy và qua web",
                          "Ratings by channel over the selected range (the selected counters and officers).", k),
            delay_stat("centre.web_delay", k),
        ),
        tag_variables(Measurement.RATING, RATING_KEYS, single=(Tag.CENTRE,)), timezone=tz)


def officer_scorecard(s: DashboardSettings) -> Dashboard:
    k, tz, r = RATING_KEYS, s.timezone, s.use_rollups
    trend = Panel(
        "officer.weekly_trend", "timeseries", "Tỷ lệ hài lòng theo tuần: cán bộ và trung tâm",
        "Weekly satisfaction ratio of the selected officer(s) next to their own centre (one centre: the centre "
        "variable is single-valued), ISO weeks. A week without rated tickets is a gap.",
        (Target("A", rated_query(k, alias=raw(RATED), time=WEEK, tz=tz, rollup=r)),
         Target("B", satisfied_query(k, alias=raw(SATISFIED), time=WEEK, tz=tz, rollup=r)),
         Target("C", rated_query(CENTRE_KEYS, alias="centre_rated_q", time=WEEK, tz=tz, rollup=r)),
         Target("D", satisfied_query(CENTRE_KEYS, alias="centre_satisfied_q", time=WEEK, tz=tz, rollup=r))),
        (merge(), *null_safe(RATED, SATISFIED, "centre_rated", "centre_satisfied"),
         binary(SATISFIED, "/", RATED, RATIO), binary("centre_satisfied", "/", "centre_rated", "centre_ratio"),
         organize({RATIO: "Cán bộ", "centre_ratio": "Trung tâm"},
                  exclude=(raw(RATED), raw(SATISFIED), "centre_rated_q", "centre_satisfied_q", RATED, SATISFIED,
                           "centre_rated", "centre_satisfied"))),
        unit="percentunit", decimals=1, width=24)
    reasons = Panel(
        "officer.reasons", "barchart", "Lý do — các lượt Không hài lòng",
        "How often each reason code was given with a 'not satisfied' rating (a rating may carry several). "
        "Reasons given with satisfied ratings (including 'Binh thuong', which counts as satisfied) are not "
        "counted here. Labels are the terminal's own.",
        tuple(Target(chr(ord("A") + i), reason_query(code, k, rollup=r, not_satisfied_only=True))
              for i, code in enumerate(s.reasons)),
        (merge(), organize(dict(s.reasons))), width=12)
    ranking = ranking_table(
        "officer.ranking", f"Xếp hạng cán bộ trong trung tâm (n ≥ {s.min_sample})",
        f"Officers of the selected centre ranked by satisfaction ratio; officers with fewer than {s.min_sample} "
        "rated tickets are not ranked (minimum-sample rule). Tied officers share one line.",
        CENTRE_KEYS, Tag.OFFICER, s.min_sample, rollup=r)
    return Dashboard(
        "hl-officer", "Phiếu điểm cán bộ",
        "Officer scorecard: weekly ratio trend vs the centre, counts and n, reasons, response rate, rank, "
        "ratings and response rate per channel (counter vs web), the web's delay after the close. "
        "Reads the daily rollups (rating_1d, ticket_1d, reason_1d): pick whole days. One centre at a time.",
        (
            trend,
            ratio_stat("officer.ratio", "Tỷ lệ hài lòng", "Satisfaction ratio over the selected range.", k,
                       rollup=r),
            ratio_stat("officer.response", "Tỷ lệ phản hồi", "Response rate over the selected range.", k,
                       response=True, rollup=r),
            Panel("officer.by_class", "table", "Số lượt theo mức và n",
                  "Rated tickets per class; walk-up ratings never count for an officer.",
                  (Target("A", rated_query(k, (Tag.CLASS,), alias="n", rollup=r)),), (organize(LABELS),),
                  width=12, value_text=CLASS_TEXT),
            reasons, ranking,
            channel_table("officer.channels", "Theo kênh đánh giá: tại quầy và qua web",
                          "Per officer: ratings at the counter and from the web link, over the selected range.", k,
                          (Tag.OFFICER,), rollup=r),
            delay_stat("officer.web_delay", k),
        ),
        # whole ISO weeks: the daily rollup is exact for ranges made of whole local days
        tag_variables(Measurement.RATING, RATING_KEYS, single=(Tag.CENTRE,)), time_from="now-12w/w", timezone=tz)


def province_overview(s: DashboardSettings) -> Dashboard:
    k, r = (Tag.PROVINCE, Tag.SERVICE), s.use_rollups
    return Dashboard(
        "hl-province", "Tổng quan tỉnh",
        "Province overview: centres of one province ranked by satisfaction ratio, with n and response rate. "
        "Reads the daily rollups: pick whole days.",
        (
            ratio_stat("province.ratio", "Tỷ lệ hài lòng toàn tỉnh", "Province satisfaction ratio.", k, rollup=r),
            ratio_stat("province.response", "Tỷ lệ phản hồi toàn tỉnh", "Province response rate.", k, response=True,
                       rollup=r),
            ranking_table("province.centres", "Xếp hạng trung tâm",
                          "Centres of the selected province (single-valued variable) ranked by satisfaction ratio; "
                          "each centre is one row (its officers are never mixed with another centre's).",
                          k, Tag.CENTRE, rollup=r),
        ),
        tag_variables(Measurement.RATING, k, single=(Tag.PROVINCE,)), time_from="now-30d/d", timezone=s.timezone)


def all_dashboards(s: DashboardSettings) -> list[Dashboard]:
    return [centre_overview(s), officer_scorecard(s), province_overview(s), fleet_health(s), integrity(s)]


CENTRE_SCOPED = ("hl-centre", "hl-officer", "hl-integrity")


def for_centre(board: Dashboard, province: str, centre: str, centre_name: str) -> Dashboard:
    """A copy locked to one centre: province and centre become hidden constants (per-centre folders)."""
    fixed = {"province": province, "centre": centre}
    variables = tuple(Variable(v.name, v.label, constant=fixed[v.name]) if v.name in fixed else v
                      for v in board.variables)
    return dataclasses.replace(board, uid=stable_uid(board.uid, centre), variables=variables,
                               title=f"{board.title} — {centre_name}", tags=(*board.tags, f"centre:{centre}"))
