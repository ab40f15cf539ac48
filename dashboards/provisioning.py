"""Grafana provisioning as code: datasource, dashboard provider, alert rules, contact points.

``build(out_dir, settings)`` writes everything ``hailong dashboards build``
produces; the same files are checked in under dashboards/generated/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broker.contract import WEB_DEVICE
from storage.schema import Field, Measurement, Tag

from .boards import all_dashboards, centre_overview
from .boards_fleet import fleet_health
from .boards_integrity import integrity
from .settings import DashboardSettings, OpeningHours

Json = dict[str, Any]
EXPR = "__expr__"  # Grafana's server-side expressions datasource
FOLDER = "hailong"
M, T, F = Measurement, Tag, Field


@dataclass(frozen=True)
class AlertRule:
    """One Grafana-managed alert rule: InfluxQL queries, then expressions, then a condition.

    ``summary`` and ``description`` are Grafana annotation templates; each may name only the
    labels its queries GROUP BY (tests/dashboards/test_alerts.py renders every one of them).
    """

    uid: str
    title: str
    summary: str
    description: str
    queries: dict[str, tuple[str, int]]  # refId -> (InfluxQL, relativeTimeRange.from in s: what $timeFilter covers)
    expressions: tuple[Json, ...]
    condition: str
    for_: str = "0s"
    no_data: str = "OK"  # NoData | Alerting | OK
    severity: str = "warning"
    dashboard_uid: str = ""  # "Go to dashboard" link in Grafana's notifications

    def to_json(self, ds_uid: str) -> Json:
        data: list[Json] = [
            {"refId": ref, "relativeTimeRange": {"from": window, "to": 0}, "datasourceUid": ds_uid,
             "model": {"refId": ref, "rawQuery": True, "query": q, "resultFormat": "time_series",
                       "intervalMs": 1000, "maxDataPoints": 43200}}
            for ref, (q, window) in self.queries.items()
        ]
        data += [{"refId": e["refId"], "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPR,
                  "model": e} for e in self.expressions]
        annotations = {"summary": self.summary, "description": self.description}
        if self.dashboard_uid:
            annotations["__dashboardUid__"] = self.dashboard_uid
        return {"uid": self.uid, "title": self.title, "condition": self.condition, "data": data,
                "noDataState": self.no_data, "execErrState": "Error", "for": self.for_,
                "labels": {"severity": self.severity, "app": "hailong"},
                "annotations": annotations, "isPaused": False}


def reduce(ref: str, source: str, reducer: str = "last") -> Json:
    return {"refId": ref, "type": "reduce", "expression": source, "reducer": reducer,
            "settings": {"mode": "dropNN"}}


def threshold(ref: str, source: str, op: str, value: float) -> Json:
    return {"refId": ref, "type": "threshold", "expression": source,
            "conditions": [{"evaluator": {"type": op, "params": [value]}}]}


def math(ref: str, expression: str) -> Json:
    return {"refId": ref, "type": "math", "expression": expression}


def _group(*tags: str) -> str:
    return " GROUP BY " + ", ".join(f'"{t}"' for t in tags)


def _or(label: str, fallback: str) -> str:
    """The label, or another label when it is empty (a display name the registry does not know)."""
    return (f"{{{{ if $labels.{label} }}}}{{{{ $labels.{label} }}}}"
            f"{{{{ else }}}}{{{{ $labels.{fallback} }}}}{{{{ end }}}}")


def _link(uid: str, *variables: str) -> str:
    """A link to a dashboard with its variables set from the alert's labels."""
    query = "&".join(f"var-{v}={{{{ $labels.{v} }}}}" for v in variables)
    return f"{{{{ externalURL }}}}/d/{uid}?orgId=1&{query}"


def _silent_for(silence_s: int, bucket_s: int) -> int:
    """Buckets to add up so that a zero sum means at least ``silence_s`` without a point.

    The last bucket is the current, partial one, so k buckets cover between (k-1)*b and k*b seconds.
    """
    return -(-silence_s // bucket_s) + 1


def _recent_count(measurement: str, field: str, by: tuple[str, ...], silence_s: int, bucket_s: int) -> str:
    """Per series: the mean count of points over the last k buckets (0 = silent for >= silence_s).

    Grafana's math drops series that one side lacks (pkg/expr/mathexp/exp.go, union), so "known
    but silent" cannot be two queries; fill(0) makes the silent buckets of a known series 0.
    """
    k = _silent_for(silence_s, bucket_s)
    return (f'SELECT moving_average(count("{field}"), {k}) AS "recent" FROM "{measurement}" WHERE $timeFilter'
            f' GROUP BY time({bucket_s}s), ' + ", ".join(f'"{t}"' for t in by) + " fill(0)")


ESCALATION_TAGS = (T.PROVINCE, T.CENTRE, T.COUNTER, T.OFFICER, T.DEVICE, T.SERVICE, T.TICKET, T.CENTRE_NAME,
                   T.COUNTER_LABEL, T.OFFICER_NAME, T.RATED_LOCAL, T.REASONS)
ESCALATION_WINDOW_S = 300  # longer than the 10 s interval: a late evaluation still sees the arrival
DEVICE_SILENT_S = 600
DEVICE_BUCKET_S = 300
DEVICE_LOOKBACK_S = 86_400  # a terminal silent for longer than this drops out (the last-will rule keeps 7 days)
INGEST_BUCKET_S = 60
INGEST_LOOKBACK_S = 6 * 3600


QMS_BUCKET_S = 300
QMS_LOOKBACK_S = 4 * 86_400  # a Friday-afternoon centre is still known on Monday morning; a long holiday drops out
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday: InfluxQL's 7d buckets start on Thursdays (+ offset)


def _clock(window_s: int, bucket: str, offset_min: int, tz: str) -> tuple[str, int]:
    """A query whose number of buckets is 2 exactly when "now" is less than ``window_s`` past a bucket start.

    Grafana's expressions cannot read the time of day, but InfluxQL's ``GROUP BY time(..., offset) tz()``
    places bucket starts at local times: the evaluation window [now - window, now] spans two buckets
    only when a start (opening time, first weekday 00:00) lies inside it. ``ingest_stats`` is the
    clock's tick source (written every few seconds while an ingest runs; fill(0) fills the rest).
    """
    return (f'SELECT count("{F.WRITTEN}") FROM "{M.INGEST_STATS}" WHERE $timeFilter '
            f"GROUP BY time({bucket}, {offset_min}m) fill(0) tz('{tz}')", window_s)


def open_clocks(s: DashboardSettings) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Per opening-hours block: (weekday clock, time-of-day clock), each 2 buckets when open.

    The time-of-day window starts ``qms_quiet_min`` after opening: the night's silence is not a
    quiet bridge, so at 07:30 the alert waits until 08:00 for a first ticket.
    """
    out = []
    for block in s.opening_hours:
        first, last = block.day_range()
        start = OpeningHours.minutes(block.opens) + s.qms_quiet_min
        span = OpeningHours.minutes(block.closes) - start
        if span <= 0:
            continue  # a block shorter than the quiet time can never be quiet for that long
        days = _clock((last - first + 1) * 86_400, "7d", ((first - EPOCH_WEEKDAY) % 7) * 1440, s.timezone)
        out.append((days, _clock(span * 60, "1d", start, s.timezone)))
    return out


def qms_quiet_rule(s: DashboardSettings, fleet_uid: str) -> AlertRule:
    """A centre with a queue system (ticket closes in the last days) that sent no close for
    ``qms_quiet_min`` minutes while open: the bridge died, lost its database or its mapping broke."""
    queries = {"TICKETS": (_recent_count(M.TICKET, F.TICKET, (T.CENTRE,), s.qms_quiet_min * 60, QMS_BUCKET_S),
                           QMS_LOOKBACK_S)}
    exprs: list[Json] = [reduce("QUIET", "TICKETS")]
    opens = []
    for i, (days, hours) in enumerate(open_clocks(s)):
        queries[f"DAYS{i}"], queries[f"HOURS{i}"] = days, hours
        exprs += [reduce(f"D{i}", f"DAYS{i}", "count"), reduce(f"H{i}", f"HOURS{i}", "count")]
        opens.append(f"(${{D{i}}} == 2 && ${{H{i}}} == 2)")
    is_open = " || ".join(opens) or "0"
    exprs.append(math("OPEN_QUIET", f"({is_open}) && $QUIET == 0"))
    schedule = "; ".join(f"{b.days} {b.opens}–{b.closes}" for b in s.opening_hours)
    return AlertRule(
        "hl-qms-quiet", "Cầu nối QMS im lặng trong giờ làm việc",
        "Không có sự kiện QMS từ trung tâm {{ $labels.centre }} trong " f"{s.qms_quiet_min} phút (giờ làm việc)",
        f"Trung tâm {{{{ $labels.centre }}}} không gửi vé đóng nào từ hệ thống xếp hàng trong hơn {s.qms_quiet_min} "
        f"phút trong giờ làm việc ({schedule}). Máy đánh giá không thể gắn đánh giá với vé. Kiểm tra cầu nối QMS "
        f"(`hailong qms bridge`, /healthz: trạng thái, cơ sở dữ liệu của hãng, kết nối broker).\n"
        f"{_link(fleet_uid, T.CENTRE)}",
        queries, tuple(exprs), "OPEN_QUIET", dashboard_uid=fleet_uid)


def _reasons(s: DashboardSettings) -> str:
    """The chosen reason codes in Vietnamese (Go regexp replace, one code at a time)."""
    pipe = "".join(f" | reReplaceAll `\\b{code}\\b` `{label}`" for code, label in s.reasons.items())
    return f'{{{{ $labels.reasons{pipe} | reReplaceAll `,` `, ` }}}}'


TICKET = "{{ if $labels.ticket }}vé {{ $labels.ticket }}{{ else }}không có vé{{ end }}"
# the officer comes from the QMS close or the registry; an unverified walk-up claim is never shown
OFFICER = ("{{ if $labels.officer_name }}{{ $labels.officer_name }} ({{ $labels.officer }})"
           "{{ else if $labels.officer }}{{ $labels.officer }}"
           "{{ else }}chưa xác định (đánh giá không có vé){{ end }}")
COMPLAINT_TAGS = (T.PROVINCE, T.CENTRE, T.COUNTER, T.CENTRE_NAME, T.COUNTER_LABEL, T.OFFICER, T.OFFICER_NAME,
                  T.TICKET, T.RATED_LOCAL)
LATE_TITLE = "Không hài lòng nhận muộn"
BURST_WINDOW_S = 1800


def escalation_text(s: DashboardSettings, centre_uid: str) -> tuple[str, str]:
    centre, counter = _or(T.CENTRE_NAME, T.CENTRE), _or(T.COUNTER_LABEL, T.COUNTER)
    summary = f"Không hài lòng: {centre} · {counter} · {TICKET} · lúc {{{{ $labels.rated_local }}}}"
    reasons = f"{{{{ if $labels.reasons }}}}{_reasons(s)}{{{{ else }}}}không chọn lý do{{{{ end }}}}"
    description = (
        f"Một công dân vừa đánh giá Không hài lòng (điểm {{{{ $values.B.Value }}}}) và có thể vẫn còn ở trung tâm.\n"
        f"Trung tâm: {centre}\nQuầy: {counter}\nCán bộ: {OFFICER}\n"
        f"Vé: {{{{ if $labels.ticket }}}}{{{{ $labels.ticket }}}}{{{{ else }}}}không có vé{{{{ end }}}}\n"
        f"Thời điểm đánh giá: {{{{ $labels.rated_local }}}} (giờ địa phương)\nLý do: {reasons}\n"
        f"Xem quầy: {_link(centre_uid, T.PROVINCE, T.CENTRE, T.COUNTER)}")
    return summary, description


def burst_rule(centre_uid: str) -> AlertRule:
    """≥ 3 "Không hài lòng" TAPPED at one counter within 30 minutes (``complaint`` points are stamped at
    the tap): a backlog delivering old complaints together is no burst, and the alert ends when the
    oldest tap leaves the 30 minutes. One instance per complaint (query B, joined to the counter's count
    by Grafana's label union), so the notification, grouped per counter, lists every officer and ticket."""
    centre, counter = _or(T.CENTRE_NAME, T.CENTRE), _or(T.COUNTER_LABEL, T.COUNTER)
    by_counter = (T.PROVINCE, T.CENTRE, T.COUNTER, T.CENTRE_NAME, T.COUNTER_LABEL)
    one = f"cán bộ {OFFICER} · {TICKET} · đánh giá lúc {{{{ $labels.rated_local }}}}"
    return AlertRule(
        "hl-not-satisfied-3", "≥ 3 Không hài lòng tại một quầy trong 30 phút",
        f"{{{{ $values.N.Value }}}} lượt Không hài lòng trong 30 phút: {centre} · {counter} — {one}",
        f"{{{{ $values.N.Value }}}} công dân đánh giá Không hài lòng tại {counter}, {centre}, trong 30 phút qua "
        f"(tính theo lúc bấm). Lượt này: {one}.\nXem quầy: {_link(centre_uid, T.PROVINCE, T.CENTRE, T.COUNTER)}",
        {"A": (f'SELECT count("{F.SCORE}") AS "n" FROM "{M.COMPLAINT}" WHERE $timeFilter' + _group(*by_counter),
               BURST_WINDOW_S),
         "B": (f'SELECT last("{F.SCORE}") AS "score" FROM "{M.COMPLAINT}" WHERE $timeFilter'
               + _group(*COMPLAINT_TAGS), BURST_WINDOW_S)},
        (reduce("N", "A"), reduce("L", "B"), math("C", "$N > 2 && $L > 0")), "C", severity="critical",
        dashboard_uid=centre_uid)


def late_rule(integrity_uid: str) -> AlertRule:
    """A "Không hài lòng" that arrived later than escalate_within_s after its tap (``late_escalation``):
    told, at a lower severity than the live page; the notification policy groups it per centre, so an
    outage backlog is one message listing every late complaint.

    A web rating's complaint (device "web", from the citizen's phone after the visit) is told by the
    same rule but not as a terminal that lost its connection: its ``late_by`` already says how long
    after the ticket's close and that it came by phone, and the text says why nobody was paged."""
    centre, counter = _or(T.CENTRE_NAME, T.CENTRE), _or(T.COUNTER_LABEL, T.COUNTER)
    web = f'{{{{ if eq $labels.{T.DEVICE} "{WEB_DEVICE}" }}}}'
    return AlertRule(
        "hl-not-satisfied-late", LATE_TITLE,
        f"{LATE_TITLE}: {centre} · {counter} · cán bộ {OFFICER} · {TICKET} · đánh giá lúc "
        f"{{{{ $labels.rated_local }}}} · {web}{{{{ $labels.late_by }}}}{{{{ else }}}}nhận muộn "
        "{{ $labels.late_by }}{{ end }}",
        f"{web}Công dân đánh giá Không hài lòng {{{{ $labels.late_by }}}} (đường dẫn đánh giá sau lượt phục vụ): "
        "công dân đã rời trung tâm nên không báo khẩn; xem lý do và liên hệ lại nếu cần.{{ else }}"
        "Đánh giá này đến hệ thống muộn {{ $labels.late_by }} sau khi công dân bấm (máy đánh giá mất kết nối?), "
        "quá thời hạn báo ngay: công dân có lẽ đã rời trung tâm.{{ end }} "
        f"Xem: {_link(integrity_uid, T.PROVINCE, T.CENTRE)}",
        {"A": (f'SELECT last("{F.LATE_S}") AS "late_s" FROM "{M.LATE_ESCALATION}" WHERE $timeFilter'
               + _group(*COMPLAINT_TAGS, T.LATE_BY, T.DEVICE), ESCALATION_WINDOW_S)},
        (reduce("B", "A"), threshold("C", "B", "gt", 0)), "C", severity="warning", dashboard_uid=integrity_uid)


def spike_rule(s: DashboardSettings, fleet_uid: str) -> AlertRule:
    """Rejections of one centre in 5 minutes over the threshold; one instance per terminal and reason
    (query B joined to the centre's count), so the notification names them: "d-q1: 8 × wrong_counter"."""
    return AlertRule(
        "hl-rejected-spike", "Tăng đột biến bản tin bị từ chối",
        "{{ $values.N.Value }} bản tin bị từ chối trong 5 phút tại trung tâm {{ $labels.centre }} — thiết bị "
        "{{ if $labels.device }}{{ $labels.device }}{{ else }}không rõ{{ end }}: {{ $values.D.Value }} × "
        "{{ $labels.reason }}",
        f"Ingest đã từ chối {{{{ $values.N.Value }}}} bản tin của trung tâm {{{{ $labels.centre }}}} trong 5 phút "
        f"(ngưỡng {s.rejected_spike}); thiết bị {{{{ if $labels.device }}}}{{{{ $labels.device }}}}{{{{ else }}}}"
        f"không rõ{{{{ end }}}} gửi {{{{ $values.D.Value }}}} bản tin bị từ chối với lý do {{{{ $labels.reason }}}}. "
        f"Xem lý do trên bảng Sức khỏe thiết bị.\n{_link(fleet_uid, T.CENTRE)}",
        {"A": (f'SELECT count("{F.TOPIC}") FROM "{M.REJECTED}" WHERE $timeFilter' + _group(T.CENTRE), 300),
         "B": (f'SELECT count("{F.TOPIC}") FROM "{M.REJECTED}" WHERE $timeFilter'
               + _group(T.CENTRE, T.DEVICE, T.REASON), 300)},
        (reduce("N", "A"), reduce("D", "B"), math("C", f"$N > {s.rejected_spike - 1} && $D > 0")), "C",
        dashboard_uid=fleet_uid)


def alert_rules(s: DashboardSettings) -> dict[str, tuple[str, tuple[AlertRule, ...]]]:
    """group name -> (evaluation interval, rules)."""
    centre_uid = centre_overview(s).uid
    fleet_uid = fleet_health(s).uid
    integrity_uid = integrity(s).uid
    esc_summary, esc_description = escalation_text(s, centre_uid)
    live = (
        # keyed on the ingest's arrival time (the escalation point), never the terminal's clock:
        # a late or clock-skewed rating escalates at the first evaluation after it arrived
        AlertRule("hl-not-satisfied", "Không hài lòng — báo ngay cho giám sát", esc_summary, esc_description,
                  {"A": (f'SELECT last("{F.SCORE}") AS "score" FROM "{M.ESCALATION}" WHERE $timeFilter'
                         + _group(*ESCALATION_TAGS), ESCALATION_WINDOW_S)},
                  (reduce("B", "A"), threshold("C", "B", "gt", 0)), "C", severity="critical",
                  dashboard_uid=centre_uid),
        burst_rule(centre_uid),
        late_rule(integrity_uid),
    )
    last_online = (f'SELECT last("{F.ONLINE}") AS "online" FROM "{M.DEVICE_STATUS}" WHERE $timeFilter'
                   + _group(T.CENTRE, T.DEVICE))
    offline = (f'SELECT count("online") FROM ({last_online}) WHERE "online" = false' + _group(T.CENTRE, T.DEVICE))
    said_online = (f'SELECT count("online") FROM ({last_online}) WHERE "online" = true'
                   + _group(T.CENTRE, T.DEVICE))
    device = "thiết bị {{ $labels.device }} tại trung tâm {{ $labels.centre }}"
    device_link = f"Xem thiết bị: {_link(fleet_uid, T.CENTRE, T.DEVICE)}"
    waiting = (f'SELECT min("waiting") FROM (SELECT "{F.IN_FLIGHT}" - "{F.HELD}" AS "waiting" FROM '
               f'"{M.INGEST_STATS}" WHERE $timeFilter' + _group(T.INSTANCE) + ")" + _group(T.INSTANCE))
    stall_s = s.ingest_stall_s
    health = (
        AlertRule("hl-device-offline", "Thiết bị ngoại tuyến quá 10 phút",
                  f"Ngoại tuyến: {device}",
                  f"Trạng thái cuối của {device} là ngoại tuyến (tắt hoặc mất kết nối, last will) từ hơn "
                  f"10 phút.\n{device_link}",
                  {"A": (offline, 7 * 86400)}, (reduce("B", "A"), threshold("C", "B", "gt", 0)), "C",
                  for_="10m", dashboard_uid=fleet_uid),
        AlertRule("hl-device-silent", "Thiết bị không gửi nhịp tim quá 10 phút",
                  f"Mất nhịp tim: {device}",
                  f"Thiết bị {{{{ $labels.device }}}} tại trung tâm {{{{ $labels.centre }}}} "
                  f"không gửi trạng thái nào trong hơn 10 phút, dù trạng thái cuối "
                  f"vẫn báo trực tuyến (treo hoặc mất mạng mà không có last will).\n{device_link}",
                  {"A": (_recent_count(M.DEVICE_STATUS, F.ONLINE, (T.CENTRE, T.DEVICE), DEVICE_SILENT_S,
                                       DEVICE_BUCKET_S), DEVICE_LOOKBACK_S),
                   "B": (said_online, DEVICE_LOOKBACK_S)},
                  (reduce("C", "A"), reduce("D", "B"), math("E", "$C == 0 && $D > 0")), "E", for_="1m",
                  dashboard_uid=fleet_uid),
        spike_rule(s, fleet_uid),
        # stalled: alive (writes its stats) but nothing written for the whole window while messages
        # that are not legitimately held (a rating waiting for its ticket_closed) wait; >= 2 samples
        AlertRule("hl-ingest-stalled", "Dịch vụ ingest ngừng ghi",
                  "Ingest {{ $labels.instance }} ngừng ghi",
                  f"Ingest {{{{ $labels.instance }}}} không ghi được điểm nào trong {stall_s} giây dù còn ít nhất "
                  f"{{{{ $values.G.Value }}}} bản tin chờ (không tính đánh giá đang giữ chờ vé). Kiểm tra InfluxDB và "
                  f"nhật ký của ingest.",
                  {"A": (f'SELECT spread("{F.WRITTEN}") FROM "{M.INGEST_STATS}" WHERE $timeFilter'
                         + _group(T.INSTANCE), stall_s),
                   "B": (waiting, stall_s),
                   "C": (f'SELECT count("{F.WRITTEN}") FROM "{M.INGEST_STATS}" WHERE $timeFilter'
                         + _group(T.INSTANCE), stall_s)},
                  (reduce("F", "A"), reduce("G", "B"), reduce("H", "C"),
                   math("E", "$F == 0 && $G > 0 && $H >= 2")), "E", for_="1m", severity="critical"),
        AlertRule("hl-ingest-vanished", "Dịch vụ ingest mất tín hiệu",
                  "{{ if $labels.instance }}Ingest {{ $labels.instance }} mất tín hiệu"
                  "{{ else }}Không có ingest nào hoạt động{{ end }}",
                  f"{{{{ if $labels.instance }}}}Ingest {{{{ $labels.instance }}}} không ghi số liệu ingest_stats "
                  f"trong hơn {stall_s} giây: tiến trình đã dừng, treo hoặc mất InfluxDB; các đánh giá của nó "
                  f"chờ trong phiên MQTT.{{{{ else }}}}Không có ingest nào ghi số liệu trong "
                  f"{INGEST_LOOKBACK_S // 3600} giờ qua.{{{{ end }}}}",
                  {"A": (_recent_count(M.INGEST_STATS, F.WRITTEN, (T.INSTANCE,), stall_s, INGEST_BUCKET_S),
                         INGEST_LOOKBACK_S)},
                  (reduce("B", "A"), threshold("C", "B", "eq", 0)), "C", no_data="Alerting", severity="critical"),
        qms_quiet_rule(s, fleet_uid),
    )
    return {"hailong-live": ("10s", live), "hailong-health": ("1m", health)}


def alert_rules_yaml(s: DashboardSettings) -> Json:
    groups = [{"orgId": 1, "name": name, "folder": FOLDER, "interval": interval,
               "rules": [r.to_json(s.datasource_uid) for r in rules]}
              for name, (interval, rules) in alert_rules(s).items()]
    return {"apiVersion": 1, "groups": groups}


# Notification templates (Grafana's Go templates over the alert group): what a supervisor's inbox shows.
NOTIFY_SUBJECT = '{{ define "hailong.subject" }}[hailong] {{ .CommonLabels.alertname }}{{ end }}'
NOTIFY_MESSAGE = (
    '{{ define "hailong.message" }}{{ range .Alerts.Firing }}{{ .Annotations.summary }}\n'
    '{{ .Annotations.description }}\n\n{{ end }}{{ range .Alerts.Resolved }}Đã hết: {{ .Annotations.summary }}\n'
    '{{ end }}{{ end }}')


def contact_points_yaml(s: DashboardSettings) -> Json:
    """Receivers and the routing: alerts carrying a centre label go to that centre's supervisors."""
    cp = s.contact_points
    email_text = {"subject": '{{ template "hailong.subject" . }}', "message": '{{ template "hailong.message" . }}',
                  "singleEmail": True}
    province: list[Json] = [{"uid": "hl-province-email", "type": "email",
                             "settings": {"addresses": ";".join(cp.emails) or "${HAILONG_ALERT_EMAILS}",
                                          **email_text}}]
    if cp.webhook_url:
        province.append({"uid": "hl-province-webhook", "type": "webhook", "settings": {"url": cp.webhook_url}})
    points = [{"orgId": 1, "name": "hailong-province", "receivers": province}]
    routes = []
    for centre, emails in sorted(cp.centre_emails.items()):
        name = f"hailong-centre-{centre}"
        points.append({"orgId": 1, "name": name, "receivers": [
            {"uid": f"hl-c-{centre}"[:40], "type": "email",
             "settings": {"addresses": ";".join(emails), **email_text}}]})
        routes.append({"receiver": name, "object_matchers": [["centre", "=", centre]], "continue": True})
    # late complaints are grouped per centre (not per counter): an outage backlog is one message with a list;
    # the same centre receivers below it, so a centre's supervisors get it like every other alert
    late = {"receiver": "hailong-province", "object_matchers": [["alertname", "=", LATE_TITLE]],
            "group_by": ["alertname", "centre"], "routes": [dict(r) for r in routes]}
    policy = {"orgId": 1, "receiver": "hailong-province", "group_by": ["alertname", "centre", "counter"],
              "group_wait": "0s", "group_interval": "1m", "repeat_interval": "4h", "routes": [late, *routes]}
    templates = [{"orgId": 1, "name": "hailong", "template": NOTIFY_SUBJECT + "\n" + NOTIFY_MESSAGE}]
    return {"apiVersion": 1, "contactPoints": points, "policies": [policy], "templates": templates}


def datasource_yaml(s: DashboardSettings) -> Json:
    return {"apiVersion": 1, "datasources": [{
        "name": s.datasource_name, "uid": s.datasource_uid, "type": "influxdb", "access": "proxy",
        "url": s.influx.url, "database": s.influx.database, "isDefault": True, "editable": False,
        "jsonData": {"httpMode": "GET", "version": "InfluxQL", "timeInterval": "10s", "dbName": s.influx.database},
        # credentials come from the environment at Grafana start, never from this file
        "user": "${HAILONG_INFLUX_USER}", "secureJsonData": {"password": "${HAILONG_INFLUX_PASSWORD}"},
    }]}


def provider_yaml(dashboards_path: str = "/var/lib/grafana/dashboards/hailong") -> Json:
    return {"apiVersion": 1, "providers": [{
        "name": "hailong", "orgId": 1, "folder": FOLDER, "type": "file", "disableDeletion": True,
        "allowUiUpdates": False, "updateIntervalSeconds": 60, "options": {"path": dashboards_path},
    }]}


def dump_json(obj: Json) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def dump_yaml(obj: Json) -> str:
    return yaml.safe_dump(obj, allow_unicode=True, sort_keys=False, width=200)


def render(s: DashboardSettings) -> dict[str, str]:
    """Relative path -> file content, for every generated file."""
    files = {f"dashboards/{d.uid}.json": dump_json(d.to_json(s.datasource_uid)) for d in all_dashboards(s)}
    files["provisioning/datasources/hailong.yaml"] = dump_yaml(datasource_yaml(s))
    files["provisioning/dashboards/hailong.yaml"] = dump_yaml(provider_yaml())
    files["provisioning/alerting/hailong-rules.yaml"] = dump_yaml(alert_rules_yaml(s))
    files["provisioning/alerting/hailong-contact-points.yaml"] = dump_yaml(contact_points_yaml(s))
    return files


def build(out_dir: Path, s: DashboardSettings) -> list[Path]:
    written = []
    for rel, text in render(s).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
