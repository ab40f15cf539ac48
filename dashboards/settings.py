"""What a deployment may change about the dashboards, alerts and reports.

Loaded from a TOML file (``[dashboards]`` keys at top level) plus
``HAILONG_DASHBOARDS__KEY`` env overrides through broker.kernel.settings, so a bad
value stops ``hailong dashboards build`` with the file, key and problem.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from broker.contract import REASON_LABELS_VI
from broker.kernel.settings import Settings, load_model
from ingest.influx import InfluxConnection

# Reason labels as the terminal shows them (broker/contract.py is the one catalogue).
DEFAULT_REASONS: dict[str, str] = dict(REASON_LABELS_VI)


class ContactPoints(Settings):
    """Where alerts go. Left empty they render as placeholders to fill in at deploy time."""

    emails: list[str] = Field(default_factory=list, description="Supervisor e-mail addresses (province default)")
    webhook_url: str = Field(default="", description="Webhook (chat bot, SMS gateway) receiving every alert")
    centre_emails: dict[str, list[str]] = Field(
        default_factory=dict, description="Centre id -> its supervisors' e-mails; alerts with that centre go there")


class DashboardSettings(Settings):
    """Settings that shape the generated Grafana JSON, provisioning YAML and reports."""

    datasource_uid: str = Field(default="hailong-influxdb", description="uid of the provisioned InfluxDB datasource")
    datasource_name: str = Field(default="hailong InfluxDB", description="Display name of the datasource")
    influx: InfluxConnection = Field(
        default_factory=InfluxConnection,
        description="InfluxDB (url, database, credentials) that Grafana, the rollups and the reports query")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="IANA zone for days, weeks and hour-of-day")
    min_sample: int = Field(default=30, ge=1, description="Minimum rated tickets before an officer is ranked")
    top_run_length: int = Field(default=15, ge=2, description="Unbroken top scores at one counter worth flagging")
    rejected_spike: int = Field(default=20, ge=1, description="Rejections per centre in 5 min that raise an alert")
    use_rollups: bool = Field(default=True, description="Officer and province dashboards read the daily rollups "
                              "(hailong dashboards rollup install); false = raw points, slow over months")
    ingest_stall_s: int = Field(default=120, ge=30, description="No ingest_stats point for this long = stalled")
    reasons: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REASONS),
                                    description="Reason code -> Vietnamese label, as configured on devices")
    contact_points: ContactPoints = Field(default_factory=ContactPoints, description="Alert receivers")


def load_settings(path: Path | str | None) -> DashboardSettings:
    return load_model(DashboardSettings, path, "HAILONG_DASHBOARDS")
