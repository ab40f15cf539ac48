"""The national dashboard (``hl-national``, "Xếp hạng tỉnh") and its alert, on the national InfluxDB.

It reads only what the national consumer stores (national/store.py): ``agg_centre_day`` (one
point per centre and service day, stamped at local midnight), ``agg_roster`` (centres per
province and day) and ``agg_received`` (arrivals, for the silence alert). Provinces are ranked
on the 766-style ratio computed from SUMMED counts -- (Σ rated − Σ Không hài lòng) / Σ rated
per province -- never an average of centre or day ratios (which weighs a 3-rating commune like
a 3,000-rating city). The same factories as the province dashboards finish the numbers
(dashboards/queries.py: null-safe sums, the shared-rank rule 1, 1, 3, the minimum sample).

Built by ``hailong dashboards build --national --out DIR`` for the Ministry's Grafana; it is not
part of a province's build.
"""

from __future__ import annotations

from storage.schema import Field, Measurement, Tag

from .grafana import Dashboard, Panel, Target, binary, merge, organize
from .provisioning import (
    FOLDER,
    AlertRule,
    Json,
    _recent_count,
    contact_points_yaml,
    datasource_yaml,
    dump_json,
    dump_yaml,
    provider_yaml,
    reduce,
    threshold,
)
from .queries import (
    LABELS,
    RANK_RULE,
    RATED,
    RATIO,
    RESPONSE,
    SATISFIED,
    SERVED,
    null_safe,
    ratio_transforms,
    raw,
    shared_rank,
)
from .settings import DashboardSettings

AGG = Measurement.AGG_CENTRE_DAY
P = Tag.PROVINCE
WEEK = "1w, 4d"  # ISO weeks (InfluxDB's weeks start on the epoch's Thursday)
RECEIVED, EXPECTED, COMPLETE, LAST = "received", "expected", "complete", "last_revision"
SILENT_BUCKET_S = 3600
SILENT_LOOKBACK_S = 14 * 86_400  # a province silent for two weeks is still known (and still alerting)


def _sum(field: str, alias: str) -> str:
    return f'SELECT sum("{field}") AS "{alias}" FROM "{AGG}" WHERE $timeFilter GROUP BY "{P}"'


def ranking_targets() -> tuple[Target, ...]:
    """Rated, satisfied (rated − Không hài lòng) and served, summed per province."""
    return (Target("A", _sum(Field.RATED, raw(RATED))),
            Target("B", f'SELECT sum("{Field.RATED}") - sum("{Field.NOT_SATISFIED}") AS "{raw(SATISFIED)}" '
                        f'FROM "{AGG}" WHERE $timeFilter GROUP BY "{P}"'),
            Target("C", _sum(Field.SERVED, raw(SERVED))))


def province_ranking(key: str, title: str, when: str, time_from: str, min_sample: int) -> Panel:
    return Panel(key, "table", title,
                 f"Provinces ranked by satisfaction ratio {when}: (Σ rated − Σ not satisfied) / Σ rated over their "
                 f"centres' daily aggregates (summed, never averaged), with response rate Σ rated / Σ served. "
                 f"Provinces with fewer than {min_sample} rated tickets are not ranked. {RANK_RULE}; a tie is one "
                 "line naming its provinces.",
                 ranking_targets(), (*ratio_transforms(served=True), *shared_rank(P, min_sample)),
                 time_from=time_from, width=12, height=10, percent=(LABELS[RATIO], LABELS[RESPONSE]))


def weekly_trend(tz: str) -> Panel:
    inner = (f'SELECT sum("{Field.RATED}") AS "r", sum("{Field.NOT_SATISFIED}") AS "ns" FROM "{AGG}" '
             f"WHERE $timeFilter GROUP BY time({WEEK}), \"{P}\" fill(none) tz('{tz}')")
    return Panel("national.trend", "timeseries", "Tỷ lệ hài lòng theo tuần, từng tỉnh",
                 "Weekly satisfaction ratio per province from summed counts (ISO weeks, Monday to Sunday); a week "
                 "without rated tickets is a gap, not 0 %.",
                 (Target("A", f'SELECT ("r" - "ns") / "r" AS "{RATIO}" FROM ({inner}) WHERE "r" > 0 '
                              f'GROUP BY "{P}"', fmt="time_series", alias=f"$tag_{P}"),),
                 unit="percentunit", decimals=1, width=24, height=9)


def completeness() -> Panel:
    return Panel(
        "national.completeness", "table", "Độ đầy đủ số liệu theo tỉnh",
        "Centre-days received vs expected in the range (expected = the centres centres.json lists for each day the "
        "national consumer ran), and the newest revision received (the province's clock when it counted). Under "
        "MQTT 3.1.1 a refused or lost message is silent: this is where a province whose data does not arrive shows.",
        (Target("A", f'SELECT count("{Field.REVISION}") AS "{raw(RECEIVED)}" FROM "{AGG}" WHERE $timeFilter '
                     f'GROUP BY "{P}"'),
         Target("B", f'SELECT sum("{Field.CENTRES}") AS "{raw(EXPECTED)}" FROM "{Measurement.AGG_ROSTER}" '
                     f'WHERE $timeFilter GROUP BY "{P}"'),
         Target("C", f'SELECT max("{Field.REVISION}") AS "{LAST}" FROM "{AGG}" WHERE $timeFilter GROUP BY "{P}"')),
        # the newest revision is a selector (its row carries that point's time): times dropped before the merge,
        # which then joins the three queries on the province alone
        (organize({}, exclude=("Time",)), merge(), *null_safe(RECEIVED, EXPECTED),
         binary(RECEIVED, "/", EXPECTED, COMPLETE),
         organize({P: LABELS[P], RECEIVED: "Ngày-trung tâm đã nhận", EXPECTED: "Ngày-trung tâm dự kiến",
                   COMPLETE: "Độ đầy đủ", LAST: "Lần tính gần nhất"},
                  exclude=(raw(RECEIVED), raw(EXPECTED)),
                  order=(P, RECEIVED, EXPECTED, COMPLETE, LAST))),
        width=24, height=9, percent=("Độ đầy đủ",), times=("Lần tính gần nhất",), no_value="—")


def national_overview(s: DashboardSettings) -> Dashboard:
    n = s.national_min_sample
    return Dashboard(
        "hl-national", "Xếp hạng tỉnh",
        "National view: provinces ranked on ticket-bound ratings from the daily per-centre aggregates each province "
        "sends (counts only: no ticket, officer or comment leaves a province). Pick whole days.",
        (province_ranking("national.ranking_week", f"Xếp hạng tỉnh — tuần này (n ≥ {n})", "this ISO week so far",
                          "now/w", n),
         province_ranking("national.ranking_month", f"Xếp hạng tỉnh — tháng này (n ≥ {n})", "this month so far",
                          "now/M", n),
         province_ranking("national.ranking_range", f"Xếp hạng tỉnh — khoảng đã chọn (n ≥ {n})",
                          "over the dashboard's range", "", n),
         completeness(), weekly_trend(s.timezone)),
        time_from="now-12w/w", timezone=s.timezone, refresh="5m", tags=("hailong", "national"))


def national_alert_rules(s: DashboardSettings) -> dict[str, tuple[str, tuple[AlertRule, ...]]]:
    """A province silent for more than ``national_silent_h`` hours (nothing arrived, not even a re-send)."""
    silent_s = s.national_silent_h * 3600
    rule = AlertRule(
        "hl-national-silent", f"Tỉnh không gửi số liệu quá {s.national_silent_h} giờ",
        f"{{{{ if $labels.province }}}}Tỉnh {{{{ $labels.province }}}} im lặng hơn {s.national_silent_h} giờ"
        f"{{{{ else }}}}Không tỉnh nào gửi số liệu{{{{ end }}}}",
        f"{{{{ if $labels.province }}}}Không nhận được bản tổng hợp nào của tỉnh {{{{ $labels.province }}}} trong hơn "
        f"{s.national_silent_h} giờ (mỗi giờ tỉnh gửi lại 2 ngày gần nhất). Kiểm tra cầu nối (bridge) của tỉnh, "
        f"chứng chỉ fed.{{{{ $labels.province }}}} và bộ hẹn giờ hailong-federation.{{{{ else }}}}Không có bản tổng "
        f"hợp nào trong {SILENT_LOOKBACK_S // 86_400} ngày qua: kiểm tra broker quốc gia và dịch vụ hailong-national."
        f"{{{{ end }}}}",
        {"A": (_recent_count(Measurement.AGG_RECEIVED, Field.N, (P,), silent_s, SILENT_BUCKET_S), SILENT_LOOKBACK_S)},
        (reduce("B", "A"), threshold("C", "B", "eq", 0)), "C", no_data="Alerting", severity="critical",
        dashboard_uid="hl-national")
    return {"hailong-national": ("5m", (rule,))}


def render_national(s: DashboardSettings) -> dict[str, str]:
    """Relative path -> content of the national Grafana's files (its own datasource: the national InfluxDB)."""
    groups: list[Json] = [{"orgId": 1, "name": name, "folder": FOLDER, "interval": interval,
                           "rules": [r.to_json(s.datasource_uid) for r in rules]}
                          for name, (interval, rules) in national_alert_rules(s).items()]
    return {"dashboards/hl-national.json": dump_json(national_overview(s).to_json(s.datasource_uid)),
            "provisioning/datasources/hailong.yaml": dump_yaml(datasource_yaml(s)),
            "provisioning/dashboards/hailong.yaml": dump_yaml(provider_yaml()),
            "provisioning/alerting/hailong-national-rules.yaml": dump_yaml({"apiVersion": 1, "groups": groups}),
            "provisioning/alerting/hailong-contact-points.yaml": dump_yaml(contact_points_yaml(s))}
