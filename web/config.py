"""Settings of the web rating service: ``hailong web serve --config web.toml``.

Loaded with :func:`broker.kernel.settings.load_model`, so a mistake stops the service at start
naming file, key and problem. Secrets (the MQTT password) come from env
(``HAILONG_WEB__MQTT__PASSWORD``) or ``mqtt.password_file``; the link keys from the fleet
state's ``weblink/`` directory (``keys_dir``), never from this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from broker import ratingscale
from broker.contract import COMMENT_MAX_CHARS, ID_PATTERN, REASON_PATTERN
from broker.identities import WEB_USER
from broker.kernel.settings import SettingError, Settings, load_model
from broker.mqtt.settings import MqttSettings

ENV_PREFIX = "HAILONG_WEB"


class CentreScale(Settings):
    """What a centre's terminals offer; the page offers the same (their words: broker/ratingscale)."""

    scale: Literal[3, 4, 5] = Field(default=4, description="Number of rating levels (the centre's terminals' scale)")
    reasons: tuple[str, ...] = Field(default=ratingscale.REASON_CODES, max_length=12,
                                     description="Reason codes offered for a low score (the terminals' reasons)")
    reasons_max_score: int | None = Field(default=None, ge=0, le=5,
                                          description="Offer reasons at or below this score (default scale - 2, "
                                                      "as on the terminal; 0 = never)")

    @model_validator(mode="after")
    def _check(self) -> CentreScale:
        import re

        for code in self.reasons:
            if not re.match(REASON_PATTERN, code):
                raise SettingError("reasons", f"reason code {code!r} must match {REASON_PATTERN}")
        return self

    @property
    def ask_reasons_at_most(self) -> int:
        return self.reasons_max_score if self.reasons_max_score is not None else self.scale - 2


class HttpSettings(Settings):
    """The page's HTTP server (put a TLS reverse proxy in front: docs/web-rating.md)."""

    host: str = Field(default="127.0.0.1", description="Listen address (the reverse proxy's upstream)")
    port: int = Field(default=8790, ge=0, le=65535, description="Listen port (0: any free port, tests)")
    forwarded_allow_ips: str = Field(default="127.0.0.1",
                                     description="Proxies whose X-Forwarded-For names the citizen's address "
                                                 "(comma list; the rate limits count per address)")
    max_body_bytes: int = Field(default=4096, ge=1024, le=65536,
                                description="Largest form accepted (a rating with every reason and a full "
                                            "comment is ~2 KB); larger: 413, nothing read further")


class LimitSettings(Settings):
    """Abuse limits: token buckets per client address and per link."""

    per_ip_per_min: int = Field(default=60, ge=1, le=100_000,
                                description="Requests per minute one address may make (burst: the same number)")
    posts_per_link: int = Field(default=5, ge=1, le=100,
                                description="Submissions one link may make within link_window_s")
    link_window_s: int = Field(default=600, ge=10, le=86_400, description="The window of posts_per_link")
    tracked: int = Field(default=100_000, ge=100, le=10_000_000,
                         description="Addresses and links remembered at most (oldest forgotten first)")


class WebConfig(Settings):
    """``hailong web serve --config web.toml``."""

    fleet: Path = Field(description="Fleet registry directory (centre names, counters, time zones)")
    keys_dir: Path | None = Field(default=None, description="The centres' link keys (default <fleet>/state/weblink;"
                                  " written by hailong web link / web key rotate)")
    outbox: Path = Field(default=Path("web-outbox.sqlite3"), description="SQLite outbox (a rating is durable here "
                         "before the citizen reads 'Cảm ơn')")
    seen_days: int = Field(default=45, ge=8, le=366, description="Remember submitted links this long (longer than "
                           "a link lives, so a replayed submission is recognised)")
    language: Literal["vi", "en"] = Field(default="vi", description="Page language unless the citizen switches")
    comment_max_chars: int = Field(default=COMMENT_MAX_CHARS, ge=0, le=COMMENT_MAX_CHARS,
                                   description="Longest comment (0: no comment box)")
    default_scale: CentreScale = Field(default_factory=CentreScale, description="Scale of centres not listed below")
    centres: dict[str, CentreScale] = Field(default_factory=dict, description="Per centre id: its terminals' scale")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description=f"Broker; user defaults to {WEB_USER}")
    http: HttpSettings = Field(default_factory=HttpSettings, description="The page's HTTP server")
    limits: LimitSettings = Field(default_factory=LimitSettings, description="Rate limits")

    @model_validator(mode="after")
    def _check(self) -> WebConfig:
        import re

        for centre in self.centres:
            if not re.match(ID_PATTERN, centre):
                raise SettingError(f"centres.{centre}", f"centre id must match {ID_PATTERN}")
        return self

    def scale_of(self, centre: str) -> CentreScale:
        return self.centres.get(centre, self.default_scale)

    @property
    def keys_path(self) -> Path:
        return self.keys_dir if self.keys_dir is not None else self.fleet / "state" / "weblink"

    @property
    def mqtt_user(self) -> MqttSettings:
        """The MQTT settings under the service's own identity (svc.web) unless another was given."""
        return self.mqtt if self.mqtt.username else self.mqtt.model_copy(update={"username": WEB_USER})


def load_config(path: Path | str | None, environ: dict[str, str] | None = None) -> WebConfig:
    cfg = load_model(WebConfig, path, ENV_PREFIX, environ)
    base = Path(path).parent if path else Path.cwd()
    updates = {k: base / v for k, v in (("outbox", cfg.outbox), ("fleet", cfg.fleet), ("keys_dir", cfg.keys_dir))
               if v is not None and not v.is_absolute()}
    return cfg.model_copy(update=updates) if updates else cfg
