"""The exported JSON Schemas reach the parser's verdict on every golden payload.

A vendor validates with a generic JSON Schema validator, not with our Python: what the
schema accepts, the ingest and the terminal must accept, and what they reject, the schema
must reject, except for the few rules JSON Schema cannot state (listed below with why).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from broker import contract as c
from tests.support.golden import invalid_payloads, valid_payloads

KIND_SCHEMA = {"rating": "rating_event", "status": "device_status", "qms": "qms_event",
               "config": "device_config_update"}
PARSERS = {"rating": c.parse_rating, "status": c.parse_status, "qms": c.parse_qms, "config": c.parse_config_update}

# Invalid goldens a JSON Schema validator cannot judge, and why. Nothing else may be listed.
NOT_EXPRESSIBLE = {
    "empty": "not JSON: a schema validates a parsed JSON value, and an empty body is none",
    "not_json": "not JSON: there is no instance to validate",
    "not_utf8": "not UTF-8: JSON text must be decoded before any schema applies",
    "too_large": "the 8 KiB limit is on the encoded bytes; JSON Schema has no byte-size keyword",
}


def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = c.json_schemas()[KIND_SCHEMA[kind]]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def _schema_accepts(kind: str, doc: Any) -> bool:
    return not list(_validator(kind).iter_errors(doc))


def _parser_accepts(kind: str, raw: bytes) -> bool:
    try:
        PARSERS[kind](raw)
    except c.ContractError:
        return False
    return True


@pytest.mark.parametrize(("name", "raw"), sorted(valid_payloads().items()))
def test_schema_accepts_every_valid_golden(name: str, raw: bytes) -> None:
    kind = name.split("__")[0]
    errors = [e.message for e in _validator(kind).iter_errors(json.loads(raw))]
    assert errors == []


@pytest.mark.parametrize("case", invalid_payloads(), ids=lambda i: i.name)
def test_schema_rejects_every_invalid_golden_it_can_express(case: Any) -> None:
    assert not _parser_accepts(case.kind, case.payload)
    if case.name in NOT_EXPRESSIBLE:
        # prove it really is outside JSON Schema's reach: no JSON value at all, or too many bytes
        try:
            json.loads(case.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        assert len(case.payload) > c.MAX_PAYLOAD_BYTES
        return
    doc = json.loads(case.payload)
    assert not _schema_accepts(case.kind, doc), f"{case.name}: the schema accepts what the parser rejects"


def test_size_limit_is_the_one_rule_the_schema_cannot_see() -> None:
    # a valid rating padded with JSON whitespace past 8 KiB: same JSON value, parser says too large
    raw = valid_payloads()["rating__top_score_touch"]
    padded = raw.replace(b",", b"," + b" " * 600)
    assert len(padded) > c.MAX_PAYLOAD_BYTES
    assert _schema_accepts("rating", json.loads(padded))
    assert not _parser_accepts("rating", padded)


def _golden(name: str) -> dict[str, Any]:
    return json.loads(valid_payloads()[name])  # type: ignore[no-any-return]


def _mutations() -> list[tuple[str, str, dict[str, Any]]]:
    """Single-field changes on valid payloads around every cross-field rule: (id, kind, doc)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    base = _golden("rating__top_score_touch")
    for scale in (3, 4, 5):
        for score in range(0, 7):
            out.append((f"scale{scale}-score{score}", "rating", {**base, "scale": scale, "score": score}))
    for event_id in ("hello", "{0190b1c2-7d3e-7a10-8b2c-1f2e3d4c5b6a}", "0190b1c27d3e7a108b2c1f2e3d4c5b6a",
                     "0190B1C2-7D3E-7A10-8B2C-1F2E3D4C5B6A", "urn:uuid:0190b1c2-7d3e-7a10-8b2c-1f2e3d4c5b6a"):
        out.append((f"event-id-{event_id[:12]}", "rating", {**base, "event_id": event_id}))
    walkup = _golden("rating__walkup")
    out.append(("walkup-with-ticket-id", "rating", {**walkup, "ticket_id": "T-1"}))
    out.append(("walkup-with-closed-at", "rating", {**walkup, "closed_at": 1}))
    out.append(("ticket-without-closed-at", "rating", {**base, "closed_at": None}))
    for tid in ("9f3a-0001", "x" * 64, "x" * 65, "", "has space", "bỏ dấu", "a\tb"):
        out.append((f"rating-ticket-id-{tid[:8]!r}", "rating", {**base, "ticket_id": tid}))
    out.append(("reasons-duplicate", "rating", {**base, "reasons": ["thai_do", "thai_do"]}))
    qms = _golden("qms__ticket_closed")
    login = _golden("qms__officer_login")
    for t in ("officer_login", "officer_logout", "ticket_called", "ticket_closed"):
        no_ticket = {k: v for k, v in qms.items() if k != "ticket"}
        out.append((f"qms-{t}-no-ticket", "qms", {**no_ticket, "type": t}))
        out.append((f"qms-{t}-null-ticket", "qms", {**qms, "type": t, "ticket": None}))
    out.append(("qms-login-ticket-id", "qms", {**login, "ticket_id": "T-1"}))
    out.append(("qms-ticket-id", "qms", {**qms, "ticket_id": "T-1"}))
    out.append(("qms-event-id-bad", "qms", {**qms, "event_id": "hello"}))
    out.append(("qms-event-id-ok", "qms", {**qms, "event_id": "0190b1c2-7d3e-7a10-8b2c-1f2e3d4c5b6a"}))
    cfg = _golden("config__language_and_names")
    out.append(("config-bad-officer-key", "config", {**cfg, "officer_names": {"Bad Key": "x"}}))
    out.append(("config-good-officer-key", "config", {**cfg, "officer_names": {"cb-a": "Lan"}}))
    return out


@pytest.mark.parametrize(("kind", "doc"), [(k, d) for _, k, d in _mutations()], ids=[i for i, _, _ in _mutations()])
def test_schema_and_parser_agree_around_cross_field_rules(kind: str, doc: dict[str, Any]) -> None:
    raw = json.dumps(copy.deepcopy(doc), ensure_ascii=False).encode("utf-8")
    assert _schema_accepts(kind, doc) == _parser_accepts(kind, raw)


def test_old_payloads_without_ticket_identity_stay_valid() -> None:
    # the vendor ticket identity is optional: no schema version bump, old senders keep working
    assert c.parse_rating(valid_payloads()["rating__top_score_touch"]).ticket_id is None
    event = c.parse_qms(valid_payloads()["qms__ticket_closed"])
    assert (event.ticket_id, event.event_id) == (None, None)
    assert "ticket_id" not in c.json_schemas()["qms_event"]["required"]


def test_committed_schema_export_is_current() -> None:
    """docs/schemas is what `make schema` writes: a vendor reading the repository reads today's contract."""
    out = Path(__file__).resolve().parents[2] / "docs" / "schemas"
    for name, doc in c.json_schemas().items():
        text = (out / f"{name}.schema.json").read_text(encoding="utf-8")
        assert text == json.dumps(doc, indent=2, ensure_ascii=False) + "\n", f"run `make schema` ({name})"
    assert "web" in c.json_schemas()["rating_event"]["properties"]["input"]["enum"]
