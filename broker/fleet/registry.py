"""The fleet registry: centres, counters, devices and officers, read from TOML files.

A fleet directory holds three files (format documented in docs/fleet.md)::

    centres.toml   [centre.<id>] name, province, has_qms, walkup_allowed
                   [centre.<id>.counter.<id>] label, services
    devices.toml   [device.<id>] centre, counter, hardware, pins, retired
    officers.toml  [officer.<id>] name, centre

Every id follows ``broker.contract.ID_PATTERN``. The registry is what the broker
ACL, the ingest's "is this device allowed to rate for this counter" check and the
provisioning bundle are generated from, so a broken registry must stop the tool
with a message naming the file, the line, the key and the problem -- never load
half a fleet.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from broker.contract import ID_PATTERN, RESERVED_DEVICE_IDS
from broker.kernel.settings import Settings

CENTRES_FILE = "centres.toml"
DEVICES_FILE = "devices.toml"
OFFICERS_FILE = "officers.toml"
_ID_RE = re.compile(ID_PATTERN)
Hardware = Literal["touch", "buttons", "both"]
# BCM numbers of the 40-pin header's general-purpose pins (GPIO0/1 are the HAT EEPROM bus).
GPIO_PINS = range(2, 28)
# score_N: button for score N; led_N: LED beside it; served: the officer's "served" button.
_PIN_NAME_RE = re.compile(r"^(score_[1-5]|led_[1-5]|served|buzzer)$")


class RegistryError(ValueError):
    """A problem in the fleet registry, naming file, line (when known), key and problem."""

    def __init__(self, file: Path | str, key: str | None, problem: str, line: int | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        self.line = line
        where = self.file + (f":{line}" if line else "")
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class _Entry(Settings):
    """An entry of the fleet registry (centres.toml, devices.toml, officers.toml)."""


class Centre(_Entry):
    """A one-stop public-service centre (Trung tâm Phục vụ hành chính công / bộ phận một cửa)."""

    id: str = Field(description="Centre id, [a-z0-9-]{1,32}")
    name: str = Field(min_length=1, max_length=64, description="Display name with full Vietnamese diacritics")
    province: str = Field(pattern=ID_PATTERN, description="Province id, e.g. thua-thien-hue (a tag in InfluxDB)")
    has_qms: bool = Field(default=True, description="A queue system adapter publishes this centre's QMS events")
    walkup_allowed: bool = Field(default=False, description="Ratings without a ticket are accepted (never scored)")
    timezone: str = Field(default="Asia/Ho_Chi_Minh",
                          description="IANA time zone of the centre: its service day (ticket numbers restart daily)")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (IANA name, e.g. Asia/Ho_Chi_Minh)") from None
        return v


class Counter(_Entry):
    """A counter (quầy) inside a centre."""

    id: str = Field(description="Counter id, unique within its centre")
    centre: str = Field(description="Centre id")
    label: str = Field(min_length=1, max_length=64, description="Display label, e.g. 'Quầy 3 – Đất đai'")
    services: tuple[str, ...] = Field(default=(), description="Service areas (lĩnh vực) served here")
    officer: str | None = Field(default=None, description="Officer credited at this counter when the centre "
                                "has no queue system (no QMS login tells the terminal who serves)")

    @field_validator("services")
    @classmethod
    def _services(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for s in v:
            if not _ID_RE.match(s):
                raise ValueError(f"service {s!r} must match {ID_PATTERN}")
        if len(set(v)) != len(v):
            raise ValueError("duplicate service")
        return v


class Device(_Entry):
    """A counter terminal (Raspberry Pi). Its MQTT username / certificate CN is its id."""

    id: str = Field(description="Device id, [a-z0-9-]{1,32}, not 'qms'")
    centre: str = Field(description="Centre the device is installed in")
    counter: str = Field(description="Counter id (within the centre) the device rates")
    hardware: Hardware = Field(default="touch", description="touch screen, physical buttons, or both")
    pins: dict[str, int] = Field(default_factory=dict,
                                 description="score_N / led_N / served / buzzer -> BCM GPIO number")
    retired: bool = Field(default=False, description="Retired devices get no credentials and no ACL entry")

    @field_validator("pins")
    @classmethod
    def _pins(cls, v: dict[str, int]) -> dict[str, int]:
        for name, pin in v.items():
            if not _PIN_NAME_RE.match(name):
                raise ValueError(f"pin name {name!r} must be score_1..score_5, led_1..led_5, served or buzzer")
            if pin not in GPIO_PINS:
                raise ValueError(f"pin {name} = {pin} is not a usable BCM GPIO (2..27)")
        seen: dict[int, str] = {}
        for name, pin in v.items():
            if pin in seen:
                raise ValueError(f"GPIO {pin} used by both {seen[pin]} and {name}")
            seen[pin] = name
        return v


class Officer(_Entry):
    """An officer (cán bộ) who is scored on ratings at the counters of a centre."""

    id: str = Field(description="Officer id, as the QMS reports it")
    name: str = Field(min_length=1, max_length=64, description="Vietnamese display name with diacritics")
    centre: str = Field(description="Centre the officer works at")
    retired: bool = Field(default=False, description="Left the centre; kept so old ratings keep a name")


@dataclass
class Registry:
    """The whole fleet. ``counters`` is keyed by (centre id, counter id)."""

    root: Path
    centres: dict[str, Centre] = field(default_factory=dict)
    counters: dict[tuple[str, str], Counter] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    officers: dict[str, Officer] = field(default_factory=dict)

    def active_devices(self, centre: str | None = None) -> list[Device]:
        """Devices that are not retired, optionally of one centre, sorted by id."""
        return sorted(
            (d for d in self.devices.values() if not d.retired and (centre is None or d.centre == centre)),
            key=lambda d: d.id,
        )

    def device(self, device_id: str) -> Device:
        try:
            return self.devices[device_id]
        except KeyError:
            raise RegistryError(self.root / DEVICES_FILE, f"device.{device_id}", "no such device") from None

    def officers_of(self, centre: str) -> list[Officer]:
        return sorted((o for o in self.officers.values() if o.centre == centre), key=lambda o: o.id)

    def counters_of(self, centre: str) -> list[Counter]:
        return sorted((c for (cid, _), c in self.counters.items() if cid == centre), key=lambda c: c.id)


# --------------------------------------------------------------------------- reading

def read_text(path: Path) -> str:
    """A registry file's text; a missing or unreadable file is a RegistryError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(path, None, f"cannot read: {exc}") from None


def _read(path: Path) -> tuple[dict[str, Any], str]:
    text = read_text(path)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))  # 3.11's TOMLDecodeError has no lineno attribute
        line = int(m.group(1)) if m else None
        raise RegistryError(path, None, f"not valid TOML: {exc}", line=line) from None


def line_of(text: str, *keys: str) -> int | None:
    """Line number of the table header ``[k1.k2...]`` (tomllib keeps no positions)."""
    parts = [rf'[ \t]*"?{re.escape(k)}"?[ \t]*' for k in keys]
    pattern = re.compile(r"^[ \t]*\[" + r"\.".join(parts) + r"\]", re.MULTILINE)
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


class _Source:
    """One registry file being read: raises errors that point into it."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / name
        self.data, self.text = _read(self.path)

    def error(self, key: str, problem: str, *header: str) -> RegistryError:
        return RegistryError(self.path, key, problem, line=line_of(self.text, *header) if header else None)

    def tables(self, section: str) -> Mapping[str, Any]:
        unknown = sorted(set(self.data) - {section})
        if unknown:
            raise self.error(unknown[0], f"unknown top-level key (expected only [{section}.<id>] tables)")
        tables = self.data.get(section, {})
        if not isinstance(tables, dict):
            raise self.error(section, f"must be tables [{section}.<id>]")
        for ident, body in tables.items():
            if not isinstance(body, dict):
                raise self.error(f"{section}.{ident}", f"must be a table [{section}.{ident}]")
            if not _ID_RE.match(ident):
                raise self.error(f"{section}.{ident}", f"id {ident!r} must match {ID_PATTERN}", section, ident)
        return tables

    def model(self, cls: type[_Entry], key: str, header: tuple[str, ...], data: dict[str, Any]) -> Any:
        try:
            return build_entry(cls, data, self.path, key)
        except RegistryError as exc:
            raise self.error(exc.key or key, exc.problem, *header) from None


def build_entry(cls: type[_Entry], data: dict[str, Any], file: Path, key: str) -> Any:
    """Validate one registry entry; a RegistryError names ``key.<field>`` and the first problem."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise RegistryError(file, f"{key}.{loc}" if loc else key, msg) from None


def load_registry(path: Path) -> Registry:
    """Read and cross-check a fleet directory; raise RegistryError on the first problem."""
    root = Path(path)
    if not root.is_dir():
        raise RegistryError(root, None, "fleet directory not found")
    reg = Registry(root=root)

    src = _Source(root, CENTRES_FILE)
    for cid, body in src.tables("centre").items():
        body = dict(body)
        counters = body.pop("counter", {})
        reg.centres[cid] = src.model(Centre, f"centre.{cid}", ("centre", cid), {"id": cid, **body})
        if not isinstance(counters, dict) or not counters:
            raise src.error(f"centre.{cid}.counter", "a centre needs at least one [centre.<id>.counter.<id>]",
                            "centre", cid)
        for qid, qbody in counters.items():
            key = f"centre.{cid}.counter.{qid}"
            header: tuple[str, ...] = ("centre", cid, "counter", qid)
            if not isinstance(qbody, dict):
                raise src.error(key, f"must be a table [{key}]")
            if not _ID_RE.match(qid):
                raise src.error(key, f"id {qid!r} must match {ID_PATTERN}", *header)
            reg.counters[(cid, qid)] = src.model(Counter, key, header, {"id": qid, "centre": cid, **qbody})

    src = _Source(root, DEVICES_FILE)
    for did, body in src.tables("device").items():
        key, header = f"device.{did}", ("device", did)
        if did in RESERVED_DEVICE_IDS:
            raise src.error(key, f"device id {did!r} is reserved", *header)
        dev: Device = src.model(Device, key, header, {"id": did, **body})
        if dev.centre not in reg.centres:
            raise src.error(f"{key}.centre", f"centre {dev.centre!r} is not in {CENTRES_FILE}", *header)
        if (dev.centre, dev.counter) not in reg.counters:
            raise src.error(f"{key}.counter", f"counter {dev.counter!r} is not a counter of centre {dev.centre!r}",
                            *header)
        if dev.hardware in ("buttons", "both") and not dev.pins:
            raise src.error(f"{key}.pins", f"hardware {dev.hardware!r} needs a pin map", *header)
        reg.devices[did] = dev
    _check_one_active_per_counter(reg, src)

    src = _Source(root, OFFICERS_FILE)
    for oid, body in src.tables("officer").items():
        key, header = f"officer.{oid}", ("officer", oid)
        off: Officer = src.model(Officer, key, header, {"id": oid, **body})
        if off.centre not in reg.centres:
            raise src.error(f"{key}.centre", f"centre {off.centre!r} is not in {CENTRES_FILE}", *header)
        reg.officers[oid] = off
    _check_counter_officers(reg, root)
    return reg


def _check_counter_officers(reg: Registry, root: Path) -> None:
    src = _Source(root, CENTRES_FILE)
    for (cid, qid), counter in reg.counters.items():
        if counter.officer is None:
            continue
        key, header = f"centre.{cid}.counter.{qid}.officer", ("centre", cid, "counter", qid)
        officer = reg.officers.get(counter.officer)
        if officer is None:
            raise src.error(key, f"officer {counter.officer!r} is not in {OFFICERS_FILE}", *header)
        if officer.centre != cid:
            raise src.error(key, f"officer {counter.officer!r} works at centre {officer.centre!r}", *header)


def _check_one_active_per_counter(reg: Registry, src: _Source) -> None:
    # Two live terminals on one counter would let one ticket be rated twice.
    owner: dict[tuple[str, str], str] = {}
    for dev in reg.devices.values():
        if dev.retired:
            continue
        slot = (dev.centre, dev.counter)
        if slot in owner:
            raise src.error(f"device.{dev.id}.counter",
                            f"counter {dev.counter!r} of centre {dev.centre!r} already has active device "
                            f"{owner[slot]!r}; retire or move it first", "device", dev.id)
        owner[slot] = dev.id
