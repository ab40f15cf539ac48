"""Changes to the fleet registry made by ``hailong fleet`` (add, move, retire).

Edits are all-or-nothing: the new devices.toml / officers.toml is written to a
scratch copy of the fleet, the whole registry is re-validated from there (the
same checks a hand edit gets), and only then replaced atomically. A technician
can therefore never leave the fleet in a state the broker renderer or the
ingest would refuse. The rewritten files keep a fixed header; comments inside
tables are not preserved (docs/fleet.md says so).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from broker.fleet.registry import (
    DEVICES_FILE,
    OFFICERS_FILE,
    Centre,
    Counter,
    Device,
    Officer,
    Registry,
    RegistryError,
    build_entry,
    load_registry,
)

_HEADERS = {
    DEVICES_FILE: "# Counter terminals. Maintained by `hailong fleet`; hand edits are fine (docs/fleet.md).\n"
                  "# The device id is its MQTT username and its certificate CN. pins are BCM GPIO numbers.\n",
    OFFICERS_FILE: "# Officers (cán bộ) as the queue system identifies them. Maintained by `hailong fleet`.\n",
}


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to the registry")


def dump_tables(section: str, entries: Iterable[BaseModel], skip_defaults: dict[str, Any],
                implied: tuple[str, ...] = ()) -> str:
    """``[section.<id>]`` tables, one per entry, in id order; default-valued keys and the
    ``implied`` keys (given by the table's place, e.g. a counter's centre) left out."""
    out: list[str] = []
    for entry in sorted(entries, key=lambda e: str(getattr(e, "id", ""))):
        data = entry.model_dump(exclude=set(implied))
        ident = data.pop("id")
        out += ["", f"[{section}.{ident}]"]
        for key, value in data.items():
            if key in skip_defaults and skip_defaults[key] == value:
                continue
            out.append(f"{key} = {toml_value(value)}")
    return "\n".join(out) + "\n"


def render_centres(centres: Iterable[Centre], counters: Iterable[Counter]) -> str:
    """centres.toml: each centre's table followed by its ``[centre.<id>.counter.<id>]`` tables."""
    counters = list(counters)
    out = []
    for centre in sorted(centres, key=lambda c: c.id):
        out.append(dump_tables("centre", [centre], {}))
        out.append(dump_tables(f"centre.{centre.id}.counter", [c for c in counters if c.centre == centre.id],
                               {"services": (), "officer": None}, implied=("centre",)))
    return "".join(out)


def render_devices(devices: Iterable[Device]) -> str:
    return _HEADERS[DEVICES_FILE] + dump_tables("device", devices, {"retired": False, "pins": {}})


def render_officers(officers: Iterable[Officer]) -> str:
    return _HEADERS[OFFICERS_FILE] + dump_tables("officer", officers, {"retired": False})


def save(registry: Registry, devices: dict[str, Device] | None = None,
         officers: dict[str, Officer] | None = None) -> Registry:
    """Validate the changed registry as a whole, then replace the files. Return the new registry."""
    root = registry.root
    texts: dict[str, str] = {}
    if devices is not None:
        texts[DEVICES_FILE] = render_devices(devices.values())
    if officers is not None:
        texts[OFFICERS_FILE] = render_officers(officers.values())
    with tempfile.TemporaryDirectory(prefix=".fleet-edit-", dir=root) as scratch:
        for name in ("centres.toml", DEVICES_FILE, OFFICERS_FILE):
            if name in texts:
                Path(scratch, name).write_text(texts[name], encoding="utf-8")
            else:
                shutil.copyfile(root / name, Path(scratch, name))
        try:
            load_registry(Path(scratch))
        except RegistryError as exc:
            # report against the real file name, not the scratch directory
            raise RegistryError(root / Path(exc.file).name, exc.key, exc.problem, exc.line) from None
        for name, text in texts.items():
            tmp = root / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, root / name)
    return load_registry(root)


def new_device(reg: Registry, **data: Any) -> Device:
    return build_entry(Device, data, reg.root / DEVICES_FILE, f"device.{data.get('id')}")


def new_officer(reg: Registry, **data: Any) -> Officer:
    return build_entry(Officer, data, reg.root / OFFICERS_FILE, f"officer.{data.get('id')}")


def add_device(reg: Registry, device: Device) -> Registry:
    if device.id in reg.devices:
        raise RegistryError(reg.root / DEVICES_FILE, f"device.{device.id}", "already exists")
    return save(reg, devices={**reg.devices, device.id: device})


def update_device(reg: Registry, device_id: str, **changes: Any) -> Registry:
    updated = new_device(reg, **(reg.device(device_id).model_dump() | changes))
    return save(reg, devices={**reg.devices, device_id: updated})


def add_officer(reg: Registry, officer: Officer) -> Registry:
    if officer.id in reg.officers:
        raise RegistryError(reg.root / OFFICERS_FILE, f"officer.{officer.id}", "already exists")
    return save(reg, officers={**reg.officers, officer.id: officer})


def update_officer(reg: Registry, officer_id: str, **changes: Any) -> Registry:
    if officer_id not in reg.officers:
        raise RegistryError(reg.root / OFFICERS_FILE, f"officer.{officer_id}", "no such officer")
    updated = new_officer(reg, **(reg.officers[officer_id].model_dump() | changes))
    return save(reg, officers={**reg.officers, officer_id: updated})
