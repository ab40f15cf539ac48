"""Load the golden payloads under tests/contract/ (see its README)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent.parent / "contract"


@dataclass(frozen=True)
class Invalid:
    name: str
    kind: str
    reason: str
    field: str | None
    payload: bytes


def valid_payloads(kind: str | None = None) -> dict[str, bytes]:
    return {
        p.stem: p.read_bytes()
        for p in sorted((GOLDEN / "valid").glob("*.json"))
        if kind is None or p.stem.split("__")[0] == kind
    }


def invalid_payloads(kind: str | None = None) -> list[Invalid]:
    out = []
    for p in sorted((GOLDEN / "invalid").glob("*.json")):
        doc = json.loads(p.read_text(encoding="utf-8"))
        if kind is not None and doc["kind"] != kind:
            continue
        raw = bytes.fromhex(doc["payload_hex"]) if "payload_hex" in doc else doc["payload_text"].encode("utf-8")
        out.append(Invalid(p.stem, doc["kind"], doc["reason"], doc["field"], raw))
    return out
