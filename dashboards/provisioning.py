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

from .boards import all_dashboards
from .settings import DashboardSettings

Json = dict[str, Any]
EXPR = "__expr__"  # Grafana's server-side expressions datasource
# Grafana templating of the alert's labels (the query's GROUP BY tags) for the notification
LABEL_TEXT = ("Trung tâm {{ $labels.centre }} · quầy {{ $labels.counter }} · cán bộ {{ $labels.officer }} "
              "· thiết bị {{ $labels.device }} · giá trị {{ $values.B }}")
FOLDER = "hailong"


@dataclass(frozen=True)
class AlertRule:
    """One Grafana-managed alert rule: InfluxQL queries, then expressions, then a condition."""

    uid: str
    title: str
    summary: str  # English, for the notification body
    queries: dict[str, str]  # refId -> InfluxQL
    window_s: int  # relativeTimeRange.from: what $timeFilter covers
    expressions: tuple[Json, ...]
    condition: str
    for_: str = "0s"
    no_data: str = "OK"  # NoData | Alerting | OK
    severity: str = "warning"

    def to_json(self, ds_uid: str) -> Json:
        data: list[Json] = [
            {"refId": ref, "relativeTimeRange": {"from": self.window_s, "to": 0}, "datasourceUid": ds_uid,
             "model": {"refId": ref, "rawQuery": True, "query": q, "resultFormat": "time_series",
                       "intervalMs": 1000, "maxDataPoints": 43200}}
            for ref, q in self.queries.items()
        ]
        data += [{"refId": e["refId"], "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": EXPR,
                  "model": e} for e in self.expressions]
        return {"uid": self.uid, "title": self.title, "condition": self.condition, "data": data,
                "noDataState": self.no_data, "execErrState": "Error", "for": self.for_,
                "labels": {"severity": self.severity, "app": "hailong"},
                "annotations": {"summary": self.summary, "description": LABEL_TEXT}, "isPaused": False}


def reduce(ref: str, source: str, reducer: str = "last") -> Json:
    return {"refId": ref, "type": "reduce", "expression": source, "reducer": reducer,
            "settings": {"mode": "dropNN"}}


def threshold(ref: str, source: str, op: str, value: float) -> Json:
    return {"refId": ref, "type": "threshold", "expression": source,
            "conditions": [{"evaluator": {"type": op, "params": [value]}}]}


def math(ref: str, expression: str) -> Json:
    return {"refId": ref, "type": "math", "expression": expression}


def not_satisfied_count(by: str) -> str:
    return f"SELECT count(\"score\") FROM \"rating\" WHERE $timeFilter AND \"class\" = 'not_satisfied' GROUP BY {by}"


def alert_rules(s: DashboardSettings) -> dict[str, tuple[str, tuple[AlertRule, ...]]]:
    """group name -> (evaluation interval, rules)."""
    live = (
        AlertRule("hl-not-satisfied", "Không hài lòng — báo ngay cho giám sát",
                  "A citizen rated 'not satisfied' in the last minute; they may still be in the building.",
                  {"A": not_satisfied_count('"centre", "counter", "officer"')}, 60,
                  (reduce("B", "A"), threshold("C", "B", "gt", 0)), "C", severity="critical"),
        AlertRule("hl-not-satisfied-3", "≥ 3 Không hài lòng tại một quầy trong 30 phút",
                  "Three or more 'not satisfied' ratings at one counter within 30 minutes.",
                  {"A": not_satisfied_count('"centre", "counter"')}, 1800,
                  (reduce("B", "A"), threshold("C", "B", "gt", 2)), "C", severity="critical"),
    )
    offline = ('SELECT count("online") FROM (SELECT last("online") AS "online" FROM "device_status" '
               'WHERE $timeFilter GROUP BY "centre", "device") WHERE "online" = false GROUP BY "centre", "device"')
    health = (
        AlertRule("hl-device-offline", "Thiết bị ngoại tuyến quá 10 phút",
                  "A terminal's last status (or its last will) says offline, for more than 10 minutes.",
                  {"A": offline}, 7 * 86400, (reduce("B", "A"), threshold("C", "B", "gt", 0)), "C", for_="10m"),
        AlertRule("hl-rejected-spike", "Tăng đột biến bản tin bị từ chối",
                  f"{s.rejected_spike} or more messages rejected by the ingest for one centre in 5 minutes.",
                  {"A": 'SELECT count("topic") FROM "rejected" WHERE $timeFilter GROUP BY "centre"'}, 300,
                  (reduce("B", "A"), threshold("C", "B", "gt", s.rejected_spike - 1)), "C"),
        AlertRule("hl-ingest-stalled", "Dịch vụ ingest ngừng ghi",
                  "No ingest_stats for a while (ingest down), or messages in flight while nothing was written.",
                  {"A": 'SELECT spread("written") FROM "ingest_stats" WHERE $timeFilter GROUP BY "instance"',
                   "B": 'SELECT last("in_flight") FROM "ingest_stats" WHERE $timeFilter GROUP BY "instance"'},
                  s.ingest_stall_s,
                  (reduce("C", "A"), reduce("D", "B"), math("E", "$C == 0 && $D > 0")), "E",
                  no_data="Alerting", severity="critical"),
    )
    return {"hailong-live": ("10s", live), "hailong-health": ("1m", health)}


def alert_rules_yaml(s: DashboardSettings) -> Json:
    groups = [{"orgId": 1, "name": name, "folder": FOLDER, "interval": interval,
               "rules": [r.to_json(s.datasource_uid) for r in rules]}
              for name, (interval, rules) in alert_rules(s).items()]
    return {"apiVersion": 1, "groups": groups}


def contact_points_yaml(s: DashboardSettings) -> Json:
    """Receivers and the routing: alerts carrying a centre label go to that centre's supervisors."""
    cp = s.contact_points
    province: list[Json] = [{"uid": "hl-province-email", "type": "email",
                             "settings": {"addresses": ";".join(cp.emails) or "${HAILONG_ALERT_EMAILS}"}}]
    if cp.webhook_url:
        province.append({"uid": "hl-province-webhook", "type": "webhook", "settings": {"url": cp.webhook_url}})
    points = [{"orgId": 1, "name": "hailong-province", "receivers": province}]
    routes = []
    for centre, emails in sorted(cp.centre_emails.items()):
        name = f"hailong-centre-{centre}"
        points.append({"orgId": 1, "name": name, "receivers": [
            {"uid": f"hl-c-{centre}"[:40], "type": "email", "settings": {"addresses": ";".join(emails)}}]})
        routes.append({"receiver": name, "object_matchers": [["centre", "=", centre]], "continue": True})
    policy = {"orgId": 1, "receiver": "hailong-province", "group_by": ["alertname", "centre", "counter"],
              "group_wait": "0s", "group_interval": "1m", "repeat_interval": "4h", "routes": routes}
    return {"apiVersion": 1, "contactPoints": points, "policies": [policy]}


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
