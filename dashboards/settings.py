"""What a deployment may change about the dashboards, alerts and reports.

Loaded from a TOML file (``[dashboards]`` keys at top level) plus
``HAILONG_DASHBOARDS__KEY`` env overrides through broker.kernel.settings, so a bad
value stops ``hailong dashboards build`` with the file, key and problem.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from broker import ratingscale
from broker.kernel.settings import Settings, load_model
from storage.connection import InfluxConnection

# Reason labels as the terminal shows them (broker/contract.py is the one catalogue).
DEFAULT_REASONS: dict[str, str] = dict(ratingscale.words("vi")["reasons"]["codes"])


class ContactPoints(Settings):
    """Where alerts go. Left empty they render as placeholders to fill in at deploy time."""

    emails: list[str] = Field(default_factory=list, description="Supervisor e-mail addresses (province default)")
    webhook_url: str = Field(default="", description="Webhook (chat bot, SMS gateway) receiving every alert")
    centre_emails: dict[str, list[str]] = Field(
        default_factory=dict, description="Centre id -> its supervisors' e-mails; alerts with that centre go there")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class OpeningHours(Settings):
    """One block of a centre's opening hours: the same times on a run of consecutive weekdays (local time)."""

    days: str = Field(default="mon-fri", description='Weekday or run of weekdays: "mon-fri", "sat", "tue-thu"')
    opens: str = Field(default="07:30", description="Opening time HH:MM, local")
    closes: str = Field(default="17:00", description="Closing time HH:MM, local (same day, after opens)")

    @field_validator("days")
    @classmethod
    def _days(cls, v: str) -> str:
        first, _, last = v.strip().lower().partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS) or (last and WEEKDAYS.index(last) <
                                                                          WEEKDAYS.index(first)):
            raise ValueError(f"{v!r}: a weekday or a run like 'mon-fri' (mon tue wed thu fri sat sun, in order)")
        return v.strip().lower()

    @field_validator("opens", "closes")
    @classmethod
    def _time(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r}: a time HH:MM, e.g. 07:30")
        return v

    @model_validator(mode="after")
    def _order(self) -> OpeningHours:
        if self.minutes(self.closes) <= self.minutes(self.opens):
            raise ValueError(f"closes {self.closes} must be after opens {self.opens}")
        return self

    @staticmethod
    def minutes(hhmm: str) -> int:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)

    def day_range(self) -> tuple[int, int]:
        """(first, last) weekday, 0 = Monday."""
        first, _, last = self.days.partition("-")
        return WEEKDAYS.index(first), WEEKDAYS.index(last or first)


class DashboardSettings(Settings):
    """Settings that shape the generated Grafana JSON, provisioning YAML and reports."""

    datasource_uid: str = Field(default="hailong-influxdb", description="uid of the provisioned InfluxDB datasource")
    datasource_name: str = Field(default="hailong InfluxDB", description="Display name of the datasource")
    influx: InfluxConnection = Field(
        default_factory=InfluxConnection,
        description="InfluxDB (url, database, credentials) that Grafana, the rollups and the reports query")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="IANA zone for days, weeks and hour-of-day")
    min_sample: int = Field(default=30, ge=1, description="Minimum rated tickets before an officer is ranked")
    national_min_sample: int = Field(default=100, ge=1, description="Minimum rated tickets in the period before a "
                                     "province is ranked on the national dashboard (hl-national)")
    national_silent_h: int = Field(default=26, ge=2, le=24 * 14, description="Hours without any aggregate from a "
                                   "province before the national alert fires (the hourly re-send plus slack)")
    top_run_length: int = Field(default=15, ge=2, description="Unbroken top scores at one counter worth flagging")
    rejected_spike: int = Field(default=20, ge=1, description="Rejections per centre in 5 min that raise an alert")
    use_rollups: bool = Field(default=True, description="Officer and province dashboards read the daily rollups "
                              "(hailong dashboards rollup install); false = raw points, slow over months")
    ingest_stall_s: int = Field(default=120, ge=30, description="No ingest_stats point for this long = stalled")
    opening_hours: list[OpeningHours] = Field(
        default_factory=lambda: [OpeningHours()], min_length=1,
        description="When the centres serve citizens (local time): the QMS-bridge-quiet alert only fires then; "
                    'add {days = "sat", opens = "07:30", closes = "11:30"} for Saturday mornings')
    qms_quiet_min: int = Field(default=30, ge=5, le=240,
                               description="Minutes without any QMS ticket close, while open, that raise the alert")
    reasons: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REASONS),
                                    description="Reason code -> Vietnamese label, as configured on devices")
    contact_points: ContactPoints = Field(default_factory=ContactPoints, description="Alert receivers")
    registry: Path | None = Field(
        default=None,
        description="Fleet registry directory whose centre and officer names the weekly scorecard prints; "
                    "null = env HAILONG_FLEET, else the ingest config's registry (hailong report weekly refuses a "
                    "scorecard of bare ids unless --allow-ids)")


def load_settings(path: Path | str | None) -> DashboardSettings:
    return load_model(DashboardSettings, path, "HAILONG_DASHBOARDS")
