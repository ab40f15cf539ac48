"""``hailong fleet import FILE.csv``: a province's centres, counters, terminals and officers from one
spreadsheet, all or nothing.

One row per counter (with its terminal and an officer), or per officer without a counter;
the columns are documented in docs/fleet.md ("A province from a spreadsheet") and in
``COLUMNS`` below. The whole file is checked before anything is written: every bad row is
reported with its line number and every problem on it, and the registry is left untouched
unless all rows are good. Rows that repeat what the registry already holds are fine, so the
same file can be imported again (after fixing a row, or to add the next centres); a row that
contradicts the registry is an error naming the command that changes it.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.contract import ID_PATTERN, RESERVED_DEVICE_IDS
from broker.fleet.registry import (
    CENTRES_FILE,
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

from .fleetedit import centres_text, init_fleet, locked, render_devices, render_officers, replace_files

COLUMNS: dict[str, str] = {
    "centre": "centre id, e.g. qn-halong (every row)",
    "centre_name": "centre name with full diacritics (a new centre's first row; later rows may leave it empty)",
    "province": "province id, e.g. quang-ninh (like centre_name)",
    "qms": "the centre has a queue system: yes/no (có/không; empty: yes for a new centre)",
    "walkup": "ratings without a ticket accepted: yes/no (empty: no for a new centre)",
    "timezone": "IANA time zone (empty: Asia/Ho_Chi_Minh)",
    "counter": "counter id within the centre, e.g. q01 (empty: an officer-only row)",
    "counter_label": "label shown on the terminal, e.g. 'Quầy 1 – Đất đai' (a new counter)",
    "services": "service-area ids served at the counter, separated by spaces or ';'",
    "device": "terminal id (its MQTT user and certificate CN), e.g. qn-hl-q01; needs a counter",
    "hardware": "touch | buttons | both (empty: touch)",
    "pins": "BCM pins for buttons/both: 'score_1=5 score_2=6 ... served=26'",
    "officer": "officer id as the queue system reports it",
    "officer_name": "officer's name with full diacritics (a new officer)",
}
# model field -> the column a person fixes
_COLUMN_OF = {"name": "centre_name", "has_qms": "qms", "walkup_allowed": "walkup", "label": "counter_label"}
_OFFICER_COLUMN_OF = {"name": "officer_name"}
_YES = {"yes", "y", "true", "1", "có", "co", "x"}
_NO = {"no", "n", "false", "0", "không", "khong"}
_ID_RE = re.compile(ID_PATTERN)
_SPLIT = re.compile(r"[\s,;]+")


class CsvImportError(ValueError):
    """The file cannot be imported; ``problems`` holds (line, problem) for every bad row."""

    def __init__(self, file: Path, problems: list[tuple[int, str]]) -> None:
        self.file = file
        self.problems = sorted(problems)
        lines = sorted({line for line, _ in self.problems})
        super().__init__("\n".join(f"{file}:{line}: {problem}" for line, problem in self.problems)
                         + f"\n{len(lines)} bad row(s); nothing was imported")

    @property
    def lines(self) -> list[int]:
        return sorted({line for line, _ in self.problems})


@dataclass
class _Claim:
    """One centre/counter/device/officer as the file describes it: each given field, with its line."""

    line: int
    fields: dict[str, tuple[Any, int]] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        return {k: v for k, (v, _) in self.fields.items()}


@dataclass
class Outcome:
    """What an import added (``unchanged`` rows were already in the registry)."""

    centres: int = 0
    counters: int = 0
    devices: int = 0
    officers: int = 0
    rows: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.centres or self.counters or self.devices or self.officers)


class _Reader:
    """Collects the file's claims and the problems of each row."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []
        self.centres: dict[str, _Claim] = {}
        self.counters: dict[tuple[str, str], _Claim] = {}
        self.devices: dict[str, _Claim] = {}
        self.officers: dict[str, _Claim] = {}
        self.at_counter: dict[tuple[str, str], list[tuple[str, int]]] = {}  # officers named per counter
        self.rows = 0

    def bad(self, line: int, problem: str) -> None:
        self.problems.append((line, problem))

    def claim(self, table: dict[Any, _Claim], ident: Any, what: str, line: int, given: dict[str, Any]) -> None:
        claim = table.setdefault(ident, _Claim(line))
        for name, value in given.items():
            if name in claim.fields and claim.fields[name][0] != value:
                old, where = claim.fields[name]
                self.bad(line, f"{what}: {_column(what, name)} {_show(value)} differs from line {where} "
                               f"({_show(old)})")
            else:
                claim.fields.setdefault(name, (value, line))

    def row(self, line: int, cells: dict[str, str]) -> None:
        self.rows += 1
        before = len(self.problems)
        cid = cells.get("centre", "")
        if not self._id(line, "centre", cid):
            return
        given: dict[str, Any] = {k: cells[c] for k, c in (("name", "centre_name"), ("province", "province"),
                                                           ("timezone", "timezone")) if cells.get(c)}
        for key, column in (("has_qms", "qms"), ("walkup_allowed", "walkup")):
            if cells.get(column):
                flag = _flag(cells[column])
                if flag is None:
                    self.bad(line, f"{column}: {cells[column]!r} is not yes/no (có/không)")
                else:
                    given[key] = flag
        self.claim(self.centres, cid, f"centre {cid}", line, given)
        qid, did, oid = cells.get("counter", ""), cells.get("device", ""), cells.get("officer", "")
        if qid and self._id(line, "counter", qid):
            counter: dict[str, Any] = {"label": cells["counter_label"]} if cells.get("counter_label") else {}
            if cells.get("services"):
                counter["services"] = tuple(s for s in _SPLIT.split(cells["services"]) if s)
            self.claim(self.counters, (cid, qid), f"counter {cid}/{qid}", line, counter)
        elif not qid:
            for column in ("counter_label", "services", "device", "hardware", "pins"):
                if cells.get(column):
                    self.bad(line, f"{column}: given without a counter")
        if did and qid and self._id(line, "device", did):
            if did in RESERVED_DEVICE_IDS:
                self.bad(line, f"device: id {did!r} is reserved")
            device: dict[str, Any] = {"centre": cid, "counter": qid}
            if cells.get("hardware"):
                device["hardware"] = cells["hardware"]
            if cells.get("pins"):
                pins = self._pins(line, cells["pins"])
                if pins is not None:
                    device["pins"] = pins
            self.claim(self.devices, did, f"device {did}", line, device)
        elif not did and (cells.get("hardware") or cells.get("pins")) and qid:
            self.bad(line, "hardware/pins: given without a device")
        if oid and self._id(line, "officer", oid):
            officer: dict[str, Any] = {"centre": cid}
            if cells.get("officer_name"):
                officer["name"] = cells["officer_name"]
            self.claim(self.officers, oid, f"officer {oid}", line, officer)
            if qid:
                self.at_counter.setdefault((cid, qid), []).append((oid, line))
        elif not oid and cells.get("officer_name"):
            self.bad(line, "officer_name: given without an officer id")
        if len(self.problems) == before and not (qid or oid or given):
            self.bad(line, "a row needs a counter, an officer or the centre's details")

    def _id(self, line: int, column: str, value: str) -> bool:
        if not value:
            self.bad(line, f"{column}: empty")
            return False
        if not _ID_RE.match(value):
            hint = f" (ids are lower case: {value.lower()!r}?)" if _ID_RE.match(value.lower()) else ""
            self.bad(line, f"{column}: id {value!r} must match [a-z0-9-]{{1,32}}{hint}")
            return False
        return True

    def _pins(self, line: int, text: str) -> dict[str, int] | None:
        pins: dict[str, int] = {}
        for item in (i for i in _SPLIT.split(text) if i):
            name, sep, num = item.partition("=")
            if not sep or not num.isdigit():
                self.bad(line, f"pins: {item!r} is not NAME=BCM (e.g. score_1=5)")
                return None
            pins[name] = int(num)
        return pins


def _column(what: str, name: str) -> str:
    return (_OFFICER_COLUMN_OF if what.startswith("officer") else _COLUMN_OF).get(name, name)


def _show(value: Any) -> str:
    return repr(" ".join(value)) if isinstance(value, tuple) else repr(value)


def _flag(text: str) -> bool | None:
    low = text.strip().lower()
    return True if low in _YES else False if low in _NO else None


def _cell(text: str) -> str:
    # spreadsheets on macOS export decomposed Vietnamese (NFD); the registry stores what a keyboard types
    return unicodedata.normalize("NFC", text.strip())


def read_rows(path: Path) -> tuple[_Reader, list[tuple[int, str]]]:
    """Parse the file into claims; header problems are fatal (returned alone), row problems collected."""
    reader = _Reader()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return reader, [(0, f"cannot read: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return reader, [(line, "not UTF-8 text: save the sheet as 'CSV UTF-8' (Excel) or UTF-8 CSV (LibreOffice)")]
    first = text.split("\n", 1)[0]
    # Excel with Vietnamese regional settings separates with ';' (the decimal separator is ',')
    delimiter = max((",", ";", "\t"), key=first.count)
    rows = _records(text, delimiter)
    header_line, header = next(rows, (1, []))
    names = [h.strip().lower() for h in header]
    fatal = [(header_line, f"unknown column {n!r} (columns: {', '.join(COLUMNS)})") for n in names
             if n and n not in COLUMNS]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    fatal += [(header_line, f"column {n!r} appears twice") for n in twice]
    if "centre" not in names:
        fatal.append((header_line, f"no 'centre' column in the header (columns: {', '.join(COLUMNS)})"))
    if fatal:
        return reader, fatal
    for line, cells in rows:
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue  # blank rows and '#' comment rows, e.g. notes in the example sheet
        if len(cells) > len(names) and any(c.strip() for c in cells[len(names):]):
            reader.bad(line, f"{len(cells)} cells but the header has {len(names)} columns")
            continue
        reader.row(line, {n: _cell(c) for n, c in zip(names, cells, strict=False) if n})
    return reader, []


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells); a quoted cell may span lines."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    for cells in rows:
        yield start, cells
        start = rows.line_num + 1


# --------------------------------------------------------------------------- merging with the registry

@dataclass
class _Merge:
    reg: Registry
    r: _Reader
    centres: dict[str, Centre] = field(default_factory=dict)
    counters: dict[tuple[str, str], Counter] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    officers: dict[str, Officer] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def entry(self, cls: type[Any], what: str, claim: _Claim, existing: Any, base: dict[str, Any],
              file: str) -> Any:
        """The entry the registry will hold (existing one, or new); None after reporting a problem."""
        data = (existing.model_dump() if existing is not None else base) | claim.values()
        try:
            new = build_entry(cls, data, self.reg.root / file, what)
        except RegistryError as exc:
            name = (exc.key or "")[len(what) + 1:].split(".")[0]
            line = claim.fields.get(name, (None, claim.line))[1]
            column = _column(what, name) if name in cls.model_fields else ""
            missing = exc.problem == "Field required"
            self.r.bad(line, f"{what}: {column + ': ' if column else ''}"
                             + (f"empty (a new {what.split()[0]} needs it)" if missing else exc.problem))
            return None
        if existing is not None and new != existing:
            for name, (_, line) in claim.fields.items():
                if getattr(new, name) != getattr(existing, name):
                    self.r.bad(line, f"{what}: the registry has {_column(what, name)} "
                                     f"{_show(getattr(existing, name))}, the file {_show(getattr(new, name))} "
                                     f"(change it with hailong fleet, not by import)")
            return None
        return new

    def run(self) -> Outcome:
        reg, r = self.reg, self.r
        out = Outcome(rows=r.rows)
        for cid, claim in r.centres.items():
            c = self.entry(Centre, f"centre {cid}", claim, reg.centres.get(cid), {"id": cid}, CENTRES_FILE)
            if c is not None:
                self.centres[cid] = c
                out.centres += cid not in reg.centres
                if cid not in reg.centres and not any(k[0] == cid for k in r.counters):
                    r.bad(claim.line, f"centre {cid}: a new centre needs at least one counter row")
        for oid, claim in r.officers.items():
            old = reg.officers.get(oid)
            if old is not None and old.retired:
                r.bad(claim.line, f"officer {oid}: retired in the registry; give the officer a new id")
                continue
            o = self.entry(Officer, f"officer {oid}", claim, old, {"id": oid}, OFFICERS_FILE)
            if o is not None:
                self.officers[oid] = o
                out.officers += old is None
        for (cid, qid), claim in r.counters.items():
            self._credit(cid, qid, claim)
            q = self.entry(Counter, f"counter {cid}/{qid}", claim, reg.counters.get((cid, qid)),
                           {"id": qid, "centre": cid}, CENTRES_FILE)
            if q is not None:
                self.counters[(cid, qid)] = q
                out.counters += (cid, qid) not in reg.counters
        owner = {(d.centre, d.counter): (d.id, "the registry") for d in reg.active_devices()}
        for did, claim in r.devices.items():
            was = reg.devices.get(did)
            if was is not None and was.retired:
                r.bad(claim.line, f"device {did}: retired in the registry; give the new unit a new id")
                continue
            d = self.entry(Device, f"device {did}", claim, was, {"id": did}, DEVICES_FILE)
            if d is None:
                continue
            holder = owner.setdefault((d.centre, d.counter), (did, f"line {claim.line}"))
            if holder[0] != did:
                r.bad(claim.line, f"device {did}: counter {d.centre}/{d.counter} already has active device "
                                  f"{holder[0]!r} ({holder[1]}); one terminal per counter")
                continue
            if d.hardware in ("buttons", "both") and not d.pins:
                r.bad(claim.line, f"device {did}: pins: hardware {d.hardware!r} needs a pin map")
                continue
            self.devices[did] = d
            out.devices += was is None
        out.warnings = self.warnings
        return out

    def _credit(self, cid: str, qid: str, claim: _Claim) -> None:
        # without a queue system nobody logs in: the counter's officer is the one credited there
        centre = self.centres.get(cid) or self.reg.centres.get(cid)
        named = self.r.at_counter.get((cid, qid), [])
        if centre is None or centre.has_qms:
            return
        for oid, line in named[1:]:
            if oid != named[0][0]:
                self.r.bad(line, f"counter {cid}/{qid}: centre {cid} has no queue system, so one officer is "
                                 f"credited per counter; line {named[0][1]} names {named[0][0]!r}")
        if named:
            claim.fields["officer"] = named[0]
        elif self.reg.counters.get((cid, qid)) is None or self.reg.counters[(cid, qid)].officer is None:
            self.warnings.append(f"line {claim.line}: counter {cid}/{qid}: centre {cid} has no queue system and "
                                 "the counter no officer: its terminal cannot be provisioned until one is set")


def import_csv(fleet: Path, path: Path, *, dry_run: bool = False) -> Outcome:
    """Check the whole file against the registry, then write it (all rows) or nothing."""
    reader, fatal = read_rows(path)
    if fatal:
        raise CsvImportError(path, fatal)
    if not any((fleet / n).exists() for n in (CENTRES_FILE, DEVICES_FILE, OFFICERS_FILE)):
        # a new fleet: checked against an empty registry, its directory created only for a good sheet
        merge, out = _check(Registry(root=fleet), reader, path)
        if out.changed and not dry_run:
            init_fleet(fleet)
            with locked(fleet):
                replace_files(fleet, _stages(merge.reg, merge))
        return out
    with locked(fleet):
        try:
            reg = load_registry(fleet)
        except RegistryError as exc:
            raise CsvImportError(path, [(0, f"the registry itself is broken, fix it first: {exc}")]) from None
        merge, out = _check(reg, reader, path)
        if out.changed and not dry_run:
            replace_files(fleet, _stages(reg, merge))
    return out


def _check(reg: Registry, reader: _Reader, path: Path) -> tuple[_Merge, Outcome]:
    merge = _Merge(reg, reader)
    out = merge.run()
    if reader.problems:
        raise CsvImportError(path, reader.problems)
    return merge, out


def _stages(reg: Registry, m: _Merge) -> list[dict[str, str]]:
    """The files in an order that keeps the registry valid after each one: centres and counters (new
    counters credit only officers already registered), then officers, then devices, then the counters'
    new officers. A crash in between leaves a fleet the tools load; importing again completes it."""
    centres = {**reg.centres, **m.centres}
    counters = {**reg.counters, **m.counters}
    early = {k: c if c.officer is None or c.officer in reg.officers else c.model_copy(update={"officer": None})
             for k, c in counters.items()}
    stages = [{CENTRES_FILE: centres_text(centres.values(), early.values())},
              {OFFICERS_FILE: render_officers({**reg.officers, **m.officers}.values())},
              {DEVICES_FILE: render_devices({**reg.devices, **m.devices}.values())}]
    if early != counters:
        stages.append({CENTRES_FILE: centres_text(centres.values(), counters.values())})
    return stages
