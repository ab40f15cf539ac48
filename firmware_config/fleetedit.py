"""Changes to the fleet registry made by ``hailong fleet`` (add, move, retire, import).

Edits are all-or-nothing: the new devices.toml / officers.toml is written to a
scratch copy of the fleet, the whole registry is re-validated from there (the
same checks a hand edit gets), and only then replaced atomically. A technician
can therefore never leave the fleet in a state the broker renderer or the
ingest would refuse. The rewritten files keep a fixed header; comments inside
tables are not preserved (docs/fleet.md says so).

Adding one terminal or one officer is the exception (firmware_config/fleet_append.py):
the new table is appended after the checks a new entry can fail. Every writer holds
the fleet's lock (``<fleet>/.fleet.lock``), so two technicians' commands never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from broker.fleet.registry import (
    CENTRES_FILE,
    DEVICES_FILE,
    ID_PATTERN,
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
    CENTRES_FILE: "# Centres and their counters (quầy). Maintained by `hailong fleet add-centre/add-counter`.\n",
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


DEVICE_DEFAULTS: dict[str, Any] = {"retired": False, "pins": {}}
OFFICER_DEFAULTS: dict[str, Any] = {"retired": False}


def centres_text(centres: Iterable[Centre], counters: Iterable[Counter]) -> str:
    return _HEADERS[CENTRES_FILE] + render_centres(centres, counters)


def render_devices(devices: Iterable[Device]) -> str:
    return _HEADERS[DEVICES_FILE] + dump_tables("device", devices, DEVICE_DEFAULTS)


def render_officers(officers: Iterable[Officer]) -> str:
    return _HEADERS[OFFICERS_FILE] + dump_tables("officer", officers, OFFICER_DEFAULTS)


LOCK_FILE = ".fleet.lock"


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the fleet's edit lock: read-check-write sequences of two commands never interleave."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def replace_files(root: Path, stages: Sequence[dict[str, str]]) -> None:
    """Validate the registry the stages end in, then write them in order (each file atomically).

    A later stage overrides an earlier one's file. Callers order the stages so that the
    registry is valid after each of them too (a crash between two files leaves a fleet the
    tools still load); only the final state is validated here, in a scratch copy.
    """
    final: dict[str, str] = {}
    for stage in stages:
        final.update(stage)
    with tempfile.TemporaryDirectory(prefix=".fleet-edit-", dir=root) as scratch:
        for name in (CENTRES_FILE, DEVICES_FILE, OFFICERS_FILE):
            if name in final:
                Path(scratch, name).write_text(final[name], encoding="utf-8")
            else:
                shutil.copyfile(root / name, Path(scratch, name))
        try:
            load_registry(Path(scratch))
        except RegistryError as exc:
            # report against the real file name, not the scratch directory
            raise RegistryError(root / Path(exc.file).name, exc.key, exc.problem, exc.line) from None
    for stage in stages:
        for name, text in stage.items():
            write_atomic(root / name, text)


def save(registry: Registry, devices: dict[str, Device] | None = None,
         officers: dict[str, Officer] | None = None, centres: dict[str, Centre] | None = None,
         counters: dict[tuple[str, str], Counter] | None = None) -> Registry:
    """Validate the changed registry as a whole, then replace the files. Return the new registry."""
    root = registry.root
    texts: dict[str, str] = {}
    if centres is not None or counters is not None:
        texts[CENTRES_FILE] = centres_text(
            (centres if centres is not None else registry.centres).values(),
            (counters if counters is not None else registry.counters).values())
    if devices is not None:
        texts[DEVICES_FILE] = render_devices(devices.values())
    if officers is not None:
        texts[OFFICERS_FILE] = render_officers(officers.values())
    with locked(root):
        replace_files(root, [texts])
    return load_registry(root)


def new_device(root: Path, **data: Any) -> Device:
    _check_id(root / DEVICES_FILE, f"device.{data.get('id')}", data.get("id"))
    return build_entry(Device, data, root / DEVICES_FILE, f"device.{data.get('id')}")


def new_officer(root: Path, **data: Any) -> Officer:
    _check_id(root / OFFICERS_FILE, f"officer.{data.get('id')}", data.get("id"))
    return build_entry(Officer, data, root / OFFICERS_FILE, f"officer.{data.get('id')}")


def update_device(reg: Registry, device_id: str, **changes: Any) -> Registry:
    updated = new_device(reg.root, **(reg.device(device_id).model_dump() | changes))
    return save(reg, devices={**reg.devices, device_id: updated})


def update_officer(reg: Registry, officer_id: str, **changes: Any) -> Registry:
    if officer_id not in reg.officers:
        raise RegistryError(reg.root / OFFICERS_FILE, f"officer.{officer_id}", "no such officer")
    updated = new_officer(reg.root, **(reg.officers[officer_id].model_dump() | changes))
    return save(reg, officers={**reg.officers, officer_id: updated})


# --------------------------------------------------------------------------- centres and counters

def init_fleet(root: Path) -> Path:
    """An empty fleet directory (no centre yet); existing files are never overwritten."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (CENTRES_FILE, DEVICES_FILE, OFFICERS_FILE):
        path = root / name
        if not path.exists():
            path.write_text(_HEADERS[name], encoding="utf-8")
    return root


def _check_id(file: Path, key: str, ident: object) -> None:
    # ids become TOML table names and MQTT topic levels: the same rule load_registry applies
    if not isinstance(ident, str) or not re.fullmatch(ID_PATTERN, ident):
        raise RegistryError(file, key, f"id {ident!r} must match {ID_PATTERN}")


def new_centre(reg: Registry, **data: Any) -> Centre:
    _check_id(reg.root / CENTRES_FILE, f"centre.{data.get('id')}", data.get("id"))
    return build_entry(Centre, data, reg.root / CENTRES_FILE, f"centre.{data.get('id')}")


def new_counter(reg: Registry, **data: Any) -> Counter:
    key = f"centre.{data.get('centre')}.counter.{data.get('id')}"
    _check_id(reg.root / CENTRES_FILE, key, data.get("id"))
    return build_entry(Counter, data, reg.root / CENTRES_FILE, key)


def add_centre(reg: Registry, centre: Centre, counters: Iterable[Counter]) -> Registry:
    """A new centre with its first counters (a centre without a counter is refused)."""
    if centre.id in reg.centres:
        raise RegistryError(reg.root / CENTRES_FILE, f"centre.{centre.id}", "already exists")
    new = {(c.centre, c.id): c for c in counters}
    return save(reg, centres={**reg.centres, centre.id: centre}, counters={**reg.counters, **new})


def add_counter(reg: Registry, counter: Counter) -> Registry:
    if counter.centre not in reg.centres:
        raise RegistryError(reg.root / CENTRES_FILE, f"centre.{counter.centre}", "no such centre")
    if (counter.centre, counter.id) in reg.counters:
        raise RegistryError(reg.root / CENTRES_FILE, f"centre.{counter.centre}.counter.{counter.id}",
                            "already exists")
    return save(reg, counters={**reg.counters, (counter.centre, counter.id): counter})


def update_counter(reg: Registry, centre: str, counter_id: str, **changes: Any) -> Registry:
    if (centre, counter_id) not in reg.counters:
        raise RegistryError(reg.root / CENTRES_FILE, f"centre.{centre}.counter.{counter_id}", "no such counter")
    updated = new_counter(reg, **(reg.counters[(centre, counter_id)].model_dump() | changes))
    return save(reg, counters={**reg.counters, (centre, counter_id): updated})


def numbered_counters(reg: Registry, centre: str, count: int, label: str = "Quầy {n}") -> list[Counter]:
    """q01..qNN with labels "Quầy 1".."Quầy N" (rename later with `hailong fleet set-counter`)."""
    width = max(2, len(str(count)))
    return [new_counter(reg, id=f"q{n:0{width}d}", centre=centre, label=label.format(n=n))
            for n in range(1, count + 1)]
