"""``hailong fleet add-device`` / ``add-officer``: one new table appended to the registry.

A province registers 2,000 terminals one command at a time too. Validating and rewriting
the whole registry for each (what the other edits do, firmware_config/fleetedit.py) made
every call cost O(fleet): 1.5 s at 2,000 terminals. A new entry can only break what it
names, so exactly that is checked -- its id and fields (the registry's models), the centre
and counter it names, a free id, one active terminal per counter -- and its table is
appended (the file's comments and order kept), atomically, under the fleet lock.

Reading the files for those checks is a line scan of the form the tools write (and hand
edits in the same style): ~13 ms for 2,000 terminals on the bench VM, where tomllib takes
~50 ms per file. Anything the scan does not recognise (multi-line values, dotted or quoted
keys, sub-tables) makes it step aside, and the file is parsed with tomllib instead: the
fast path is exact or not taken.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from broker.contract import RESERVED_DEVICE_IDS
from broker.fleet.registry import (
    CENTRES_FILE,
    DEVICES_FILE,
    OFFICERS_FILE,
    Device,
    Officer,
    RegistryError,
    read_text,
)

from .fleetedit import DEVICE_DEFAULTS, OFFICER_DEFAULTS, dump_tables, locked, write_atomic

_KEY_VALUE = re.compile(r"^([A-Za-z0-9_-]+)[ \t]*=[ \t]*(.+)$")
_MULTILINE = ('"""', "'''", "[")  # values that may continue on the next line
_PLAIN = re.compile(r'^"([^"\\]*)"[ \t]*(?:#.*)?$')  # a string without escapes, the common case
_JSON = json.JSONDecoder()
_UNREAD = object()


def _scalar(raw: str) -> Any:
    """A one-line string or boolean value with an optional trailing comment; _UNREAD otherwise."""
    if raw.startswith('"'):
        plain = _PLAIN.match(raw)
        if plain:
            return plain.group(1)
        try:
            value, end = _JSON.raw_decode(raw)  # a TOML basic string without TOML-only escapes
        except ValueError:
            return _UNREAD
        rest = raw[end:].strip()
        return value if isinstance(value, str) and (not rest or rest.startswith("#")) else _UNREAD
    word = raw.split("#", 1)[0].strip()
    return {"true": True, "false": False}.get(word, _UNREAD)


def scan_tables(text: str, section: str, keys: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """``{id: {key: value}}`` of the ``[section.<id>]`` tables, for ``keys`` only; None when the text
    holds anything but such tables of one-line ``key = value`` pairs (then tomllib must read it)."""
    header = re.compile(rf"^\[[ \t]*{re.escape(section)}\.([a-z0-9-]{{1,32}})[ \t]*\][ \t]*(#.*)?$")
    tables: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = header.match(line)
        if m:
            if m.group(1) in tables:
                return None  # defined twice: tomllib names the problem
            current = tables[m.group(1)] = {}
            continue
        m = _KEY_VALUE.match(line)
        if current is None or m is None or m.group(2).startswith(_MULTILINE):
            return None
        if m.group(1) in keys:
            value = _scalar(m.group(2))
            if value is _UNREAD:
                return None
            current[m.group(1)] = value
    return tables


def _tables(path: Path, section: str, keys: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    text = read_text(path)
    fast = scan_tables(text, section, keys)
    if fast is not None:
        return fast, text
    try:
        tables = tomllib.loads(text).get(section, {})
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(path, None, f"not valid TOML: {exc}") from None
    if not isinstance(tables, dict):
        raise RegistryError(path, section, f"must be tables [{section}.<id>]")
    return {k: v if isinstance(v, dict) else {} for k, v in tables.items()}, text


def _has_table(path: Path, *keys: str) -> bool:
    """Whether centres.toml defines ``[k1.k2...]`` (a header search; tomllib decides when it finds none)."""
    text = path.read_text(encoding="utf-8")
    if re.search(r"^[ \t]*\[[ \t]*" + r"\.".join(map(re.escape, keys)) + r"[ \t]*\]", text, re.M):
        return True
    try:
        node: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(path, None, f"not valid TOML: {exc}") from None
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return isinstance(node, dict)


def _append(path: Path, text: str, table: str) -> None:
    write_atomic(path, text + ("" if not text or text.endswith("\n") else "\n") + table)


def append_device(root: Path, device: Device) -> None:
    """Register one terminal (a model already validated by fleetedit.new_device)."""
    key, path = f"device.{device.id}", root / DEVICES_FILE
    if device.id in RESERVED_DEVICE_IDS:
        raise RegistryError(path, key, f"device id {device.id!r} is reserved")
    if device.hardware in ("buttons", "both") and not device.pins:
        raise RegistryError(path, f"{key}.pins", f"hardware {device.hardware!r} needs a pin map")
    with locked(root):
        if not _has_table(root / CENTRES_FILE, "centre", device.centre):
            raise RegistryError(path, f"{key}.centre", f"centre {device.centre!r} is not in {CENTRES_FILE}")
        if not _has_table(root / CENTRES_FILE, "centre", device.centre, "counter", device.counter):
            raise RegistryError(path, f"{key}.counter",
                                f"counter {device.counter!r} is not a counter of centre {device.centre!r}")
        devices, text = _tables(path, "device", ("centre", "counter", "retired"))
        if device.id in devices:
            raise RegistryError(path, key, "already exists")
        for other, body in devices.items():
            # two live terminals on one counter would let one ticket be rated twice
            if not device.retired and not body.get("retired", False) and \
                    (body.get("centre"), body.get("counter")) == (device.centre, device.counter):
                raise RegistryError(path, f"{key}.counter",
                                    f"counter {device.counter!r} of centre {device.centre!r} already has active "
                                    f"device {other!r}; retire or move it first")
        _append(path, text, dump_tables("device", [device], DEVICE_DEFAULTS))


def append_officer(root: Path, officer: Officer) -> None:
    """Register one officer (a model already validated by fleetedit.new_officer)."""
    key, path = f"officer.{officer.id}", root / OFFICERS_FILE
    with locked(root):
        if not _has_table(root / CENTRES_FILE, "centre", officer.centre):
            raise RegistryError(path, f"{key}.centre", f"centre {officer.centre!r} is not in {CENTRES_FILE}")
        officers, text = _tables(path, "officer", ())
        if officer.id in officers:
            raise RegistryError(path, key, "already exists")
        _append(path, text, dump_tables("officer", [officer], OFFICER_DEFAULTS))
