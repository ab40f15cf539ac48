"""The terminal's configuration: one TOML file per device, plus env overrides.

Loaded with :func:`broker.kernel.settings.load_model` (env prefix ``HAILONG_DEVICE``,
e.g. ``HAILONG_DEVICE__MQTT__PASSWORD``). The fleet provisioning tool generates
these files, so this model is a contract too: add fields with defaults, never
rename or remove one. Every key is documented in docs/device.md.

Some settings (officer names, language, scale, window, ...) can later be
changed live by a retained ``DeviceConfigUpdate``; see :meth:`DeviceConfig.with_update`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from broker import ratingscale
from broker.contract import ID_PATTERN, REASON_PATTERN, DeviceConfigUpdate
from broker.kernel.settings import ConfigError, SecretFile, SettingError, Settings, load_model
from broker.mqtt.settings import MqttSettings

ENV_PREFIX = "HAILONG_DEVICE"

Id = Annotated[str, Field(pattern=ID_PATTERN)]
ReasonCode = Annotated[str, Field(pattern=REASON_PATTERN)]
DisplayText = Annotated[str, Field(min_length=1, max_length=64)]
BcmPin = Annotated[int, Field(ge=0, le=27)]

DEFAULT_REASONS = ratingscale.REASON_CODES  # the shared rating scale's codes (broker/ratingscale)


class OutboxSettings(Settings):
    """Where unsent ratings wait for the broker, and how many may wait."""

    path: Path = Field(default=Path("/var/lib/hailong/outbox.sqlite3"),
                       description="SQLite file of the outbox; relative paths are relative to the config file")
    max_ratings: int = Field(default=50_000, ge=10, le=5_000_000,
                             description="Hard cap on unsent ratings. When reached, new ratings are refused "
                                         "(the terminal goes out of service); queued ratings are never dropped")
    high_water: float = Field(default=0.8, gt=0, lt=1,
                              description="Fraction of max_ratings above which status.outbox_nearly_full is set")


class GpioSettings(Settings):
    """Physical buttons and LEDs (BCM pin numbers)."""

    buttons: dict[int, BcmPin] = Field(default_factory=dict,
                                       description='Score -> BCM pin of its button, e.g. {"4" = 5, "3" = 6, ...}')
    leds: dict[int, BcmPin] = Field(default_factory=dict,
                                    description="Score -> BCM pin of the LED beside its button (optional)")
    served_pin: BcmPin | None = Field(default=None,
                                      description="BCM pin of the officer's 'served' button (manual_served mode)")
    debounce_ms: int = Field(default=50, ge=1, le=2000, description="Contact debounce time in milliseconds")
    hold_ms: int = Field(default=20, ge=1, le=1000,
                         description="A press counts only once the button has been held down this long: "
                                     "a glitch on the line or a brushing hand records nothing")
    pull_up: bool = Field(default=True, description="Buttons connect the pin to ground (internal pull-up)")
    buzzer_pin: BcmPin | None = Field(default=None,
                                      description="BCM pin of an optional buzzer that sounds the outcome of "
                                                  "every press (accepted, too early, already rated)")
    buzzer_tonal: bool = Field(default=False,
                               description="The buzzer is a passive piezo played with tones (gpiozero "
                                           "TonalBuzzer, needs PWM); false: an active buzzer switched on/off")

    @field_validator("buttons", "leds")
    @classmethod
    def _scores(cls, v: dict[int, int]) -> dict[int, int]:
        bad = [k for k in v if not 1 <= k <= 5]
        if bad:
            raise ValueError(f"scores must be 1..5, got {bad}")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> GpioSettings:
        pins = [*self.buttons.values(), *self.leds.values(),
                *(p for p in (self.served_pin, self.buzzer_pin) if p is not None)]
        dup = sorted({p for p in pins if pins.count(p) > 1})
        if dup:
            raise ValueError(f"BCM pins used twice: {dup}")
        return self


Voice = Literal["vi", "vi-vn-x-south", "vi-vn-x-central"]


class AudioSettings(Settings):
    """Spoken prompts and sounds (device/audio.py); off unless a speaker is fitted."""

    enabled: bool = Field(default=False, description="Speak the prompt, the level names and the thanks, "
                                                     "and sound 'please wait' / 'not now' after a press")
    volume: int = Field(default=80, ge=0, le=100, description="Playback volume in percent of the clips' level")
    voice: Voice = Field(default="vi", description="espeak-ng voice the clips are generated with at provisioning: "
                                                   "vi (northern), vi-vn-x-south or vi-vn-x-central")
    dir: Path = Field(default=Path("/usr/local/lib/hailong/sounds"),
                      description="Folder of the generated clips (<name>.wav); relative paths are relative to "
                                  "the config file")
    recorded_dir: Path = Field(default=Path("/etc/hailong/sounds"),
                               description="A recorded WAV here with a clip's name replaces the generated one")
    output: str | None = Field(default=None, max_length=200,
                               description="SDL audio output device name (default: the system's default output)")


class DisplaySettings(Settings):
    """Accessibility modes: larger text and more time, for every citizen at this terminal or
    (through the on-screen "Chữ lớn" button) for the citizen in front of it."""

    large_text: bool = Field(default=False,
                             description="Larger text on every screen for every citizen (about 1.3x)")
    extra_time: bool = Field(default=False,
                             description="Prompt, reasons and thank-you screens stay extra_time_factor times "
                                         "longer for every citizen (the prompt never past rating_window_s)")
    extra_time_factor: float = Field(default=2.0, ge=1.5, le=4.0,
                                     description="How much longer the screens stay in extra-time mode")
    citizen_toggle: bool = Field(default=True,
                                 description='Show the "Chữ lớn" button on the prompt and reasons screens: large '
                                             "text and extra time for the current citizen, until the thank-you ends")


class WebLinkSettings(Settings):
    """The "Quét mã để đánh giá sau" QR code: when the citizen did not rate before the prompt timed out, a
    rating link for that ticket (docs/web-rating.md), signed with this counter's own link key."""

    enabled: bool = Field(default=False, description="Show the QR screen after an unrated prompt (qms mode, a "
                                                     "screen; needs base_url and the key)")
    base_url: str | None = Field(default=None, max_length=96, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
                                 description="Public origin of the web rating service, e.g. "
                                             "https://danhgia.example.gov.vn (no path)")
    key: SecretStr | None = Field(default=None, description="This counter's link key, <key id>:<hex>; prefer "
                                                            "key_file (env HAILONG_DEVICE__WEB_LINK__KEY)")
    key_file: SecretFile = Field(default=None, description="File whose first line is this counter's link key "
                                                           "(hailong fleet provision --web-base writes it, mode 0600)")
    show_s: float = Field(default=20.0, ge=3, le=120,
                          description="How long the QR screen shows; the next ticket called or closed ends it sooner")
    valid_days: int = Field(default=7, ge=1, le=30,
                            description="The link is valid until the end of the service day plus this many days")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", max_length=64,
                          description="The centre's time zone: a ticket's service day and the link's expiry")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _complete(self) -> WebLinkSettings:
        if self.enabled and self.base_url is None:
            raise SettingError("base_url", "web_link.enabled needs the web rating service's public origin")
        if self.enabled and self.key is None and self.key_file is None:
            raise SettingError("key_file", "web_link.enabled needs this counter's link key (key_file or env key)")
        return self


class DeviceConfig(Settings):
    """Everything one counter terminal needs to know."""

    device_id: Id = Field(description="This terminal's id; also its MQTT client id and username")
    centre: Id = Field(description="Centre id the registry assigns this device to")
    counter: Id = Field(description="Counter (quầy) id the registry assigns this device to")
    centre_name: DisplayText = Field(description="Centre name shown on the idle screen")
    counter_label: DisplayText = Field(description='Counter label shown on screen, e.g. "Quầy 3"')
    officer_names: dict[Id, DisplayText] = Field(default_factory=dict,
                                                 description="Officer id -> display name (cán bộ)")
    officer_id: Id | None = Field(default=None,
                                  description="Officer credited when no QMS login is known (manual modes)")
    language: Literal["vi", "en"] = Field(default="vi", description="Default UI language")
    scale: Literal[3, 4, 5] = Field(default=4, description="Number of rating levels")
    rating_window_s: int = Field(default=60, ge=5, le=600,
                                 description="A ticket may be rated only this many seconds after it closed")
    prompt_timeout_s: int = Field(default=30, ge=5, le=300,
                                  description="Prompt returns to idle (ticket not rated) after this many seconds")
    reasons_timeout_s: int = Field(default=15, ge=3, le=120,
                                   description="Reasons screen sends what was chosen after this many seconds")
    thanks_s: float = Field(default=3.0, ge=0.5, le=30, description="How long the thank-you screen shows")
    reasons: tuple[ReasonCode, ...] = Field(default=DEFAULT_REASONS, max_length=12,
                                            description="Reason codes offered after a low score")
    reasons_max_score: int | None = Field(default=None, ge=0, le=5,
                                          description="Ask for reasons at or below this score "
                                                      "(default: scale - 2, i.e. below Hài lòng; 0 = never)")
    mode: Literal["qms", "manual_served", "always_on"] = Field(
        default="qms", description="qms: prompt on ticket_closed; manual_served: prompt after the officer's "
                                   "'served' press; always_on: prompt always shown, rate-limited")
    always_on_min_interval_s: float = Field(default=10.0, ge=1, le=600,
                                            description="always_on mode: minimum seconds between two ratings")
    walkup_allowed: bool = Field(default=False,
                                 description="Accept a rating with no ticket (flagged walk-up, never scored)")
    hardware: Literal["touch", "buttons", "both"] = Field(default="touch",
                                                         description="Touch screen, GPIO buttons, or both")
    fullscreen: bool = Field(default=True, description="Kiosk full screen (false: a window, for demos)")
    gpio: GpioSettings = Field(default_factory=GpioSettings, description="BCM pin map for buttons and LEDs")
    outbox: OutboxSettings = Field(default_factory=OutboxSettings, description="Durable outbox settings")
    audio: AudioSettings = Field(default_factory=AudioSettings, description="Spoken prompts and sounds")
    display: DisplaySettings = Field(default_factory=DisplaySettings,
                                     description="Large-text and extra-time modes (accessibility)")
    mqtt: MqttSettings = Field(description="Broker URL, per-device credentials, TLS files")
    web_link: WebLinkSettings = Field(default_factory=WebLinkSettings,
                                      description="QR code to rate later from a phone after an unrated prompt")
    heartbeat_s: int = Field(default=60, ge=5, le=3600, description="Seconds between status heartbeats")

    @field_validator("outbox")
    @classmethod
    def _relative_outbox(cls, v: OutboxSettings, info: ValidationInfo) -> OutboxSettings:
        base = (info.context or {}).get("base_dir")
        if base is not None and not v.path.is_absolute():
            return v.model_copy(update={"path": Path(base) / v.path})
        return v

    @field_validator("web_link")
    @classmethod
    def _relative_key(cls, v: WebLinkSettings, info: ValidationInfo) -> WebLinkSettings:
        base = (info.context or {}).get("base_dir")
        if base is not None and v.key_file is not None and not v.key_file.is_absolute():
            return v.model_copy(update={"key_file": Path(base) / v.key_file})
        return v

    @field_validator("audio")
    @classmethod
    def _relative_sounds(cls, v: AudioSettings, info: ValidationInfo) -> AudioSettings:
        base = (info.context or {}).get("base_dir")
        if base is None:
            return v
        fix = {k: Path(base) / p for k, p in (("dir", v.dir), ("recorded_dir", v.recorded_dir)) if not p.is_absolute()}
        return v.model_copy(update=fix) if fix else v

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.hardware in ("buttons", "both"):
            missing = [s for s in range(1, self.scale + 1) if s not in self.gpio.buttons]
            if missing:
                raise SettingError("gpio.buttons", f"hardware={self.hardware!r} needs a pin for every score "
                                                   f"1..{self.scale}; missing {missing}")
        extra = [s for s in self.gpio.buttons if s > self.scale]
        if extra:
            raise SettingError("gpio.buttons", f"scores {extra} exceed scale {self.scale}")
        if self.mode == "manual_served" and self.hardware == "buttons" and self.gpio.served_pin is None:
            raise SettingError("gpio.served_pin", "manual_served mode on a button-only unit needs a 'served' button")
        if self.web_link.enabled and self.mode != "qms":
            raise SettingError("web_link.enabled", "a rating link binds to a queue system's ticket: qms mode only")
        if self.web_link.enabled and self.hardware == "buttons":
            raise SettingError("web_link.enabled", "a button unit has no screen to show the QR code on")
        return self

    @property
    def ask_reasons_at_most(self) -> int:
        if self.reasons_max_score is not None:
            return self.reasons_max_score
        return self.scale - 2

    def officer_name(self, officer: str | None) -> str | None:
        if officer is None:
            return None
        return self.officer_names.get(officer, officer)

    def with_update(self, update: DeviceConfigUpdate) -> DeviceConfig:
        """This config with a retained admin update applied (absent fields unchanged)."""
        changes: dict[str, Any] = {}
        for src, dst in (("language", "language"), ("scale", "scale"), ("rating_window_s", "rating_window_s"),
                         ("prompt_timeout_s", "prompt_timeout_s"), ("centre_name", "centre_name"),
                         ("reasons", "reasons")):
            value = getattr(update, src)
            if value is not None:
                changes[dst] = value
        if update.officer_names is not None:
            changes["officer_names"] = dict(update.officer_names)
        # re-validate so an update cannot produce a config the file could not
        # (e.g. scale 5 on a unit with four buttons)
        # (the mqtt section is passed as is: it keeps the secret read at load)
        data = self.model_dump() | changes | {"mqtt": self.mqtt}
        return DeviceConfig.model_validate(data)


def load_device_config(path: Path | str | None, environ: dict[str, str] | None = None) -> DeviceConfig:
    """Read a device TOML file plus HAILONG_DEVICE__* env overrides; raise ConfigError."""
    return load_model(DeviceConfig, path, ENV_PREFIX, environ)


def config_error_code(exc: ConfigError) -> str:
    """The short code the out-of-service screen shows for a config that failed to load.

    C1: the file does not exist; C2: it cannot be read or is not TOML; C3: a key is missing or
    invalid (the log names file, key and problem). docs/technician.md lists every code.
    """
    if exc.key is None and exc.problem == "file not found":
        return "C1"
    if exc.key is None and exc.problem.startswith(("not valid TOML", "cannot read")):
        return "C2"
    return "C3"


def device_id_hint(path: Path | str | None, environ: dict[str, str] | None = None) -> str | None:
    """The device id a config names even when the config as a whole is invalid (for the
    out-of-service screen, so a technician knows which unit it is), or None. Never raises."""
    env = os.environ if environ is None else environ
    found = env.get(f"{ENV_PREFIX}__DEVICE_ID")
    if found is None and path is not None:
        try:
            found = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("device_id")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
    return found if isinstance(found, str) and re.fullmatch(ID_PATTERN, found) else None
