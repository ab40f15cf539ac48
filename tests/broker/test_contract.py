"""The wire contract: golden payloads, topics, classes, JSON Schema export."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker import contract as c
from hailong.cli import main
from tests.support.golden import invalid_payloads, valid_payloads

PARSERS = {"rating": c.parse_rating, "status": c.parse_status, "qms": c.parse_qms, "config": c.parse_config_update}


@pytest.mark.parametrize(("name", "raw"), sorted(valid_payloads().items()))
def test_valid_golden_payloads_parse_and_round_trip(name: str, raw: bytes) -> None:
    kind = name.split("__")[0]
    msg = PARSERS[kind](raw)
    # what we serialise parses back to the same message (device -> ingest round trip)
    assert PARSERS[kind](msg.to_json()) == msg


@pytest.mark.parametrize("case", invalid_payloads(), ids=lambda i: i.name)
def test_invalid_golden_payloads_are_rejected_with_reason_and_field(case: object) -> None:
    from tests.support.golden import Invalid

    assert isinstance(case, Invalid)
    with pytest.raises(c.ContractError) as err:
        PARSERS[case.kind](case.payload)
    assert err.value.reason == case.reason
    assert err.value.field == case.field
    if case.field:
        assert case.field in str(err.value), "the message must name the field"


@pytest.mark.parametrize(
    ("scale", "score", "expected"),
    [
        (4, 4, "very_satisfied"), (4, 3, "satisfied"), (4, 2, "satisfied"), (4, 1, "not_satisfied"),
        (3, 3, "very_satisfied"), (3, 2, "satisfied"), (3, 1, "not_satisfied"),
        (5, 5, "very_satisfied"), (5, 4, "satisfied"), (5, 3, "satisfied"), (5, 2, "not_satisfied"),
        (5, 1, "not_satisfied"),
    ],
)
def test_satisfaction_class_table(scale: int, score: int, expected: str) -> None:
    assert c.satisfaction_class(score, scale).value == expected


@pytest.mark.parametrize(("scale", "score"), [(4, 0), (4, 5), (6, 1), (2, 1)])
def test_satisfaction_class_rejects_out_of_range(scale: int, score: int) -> None:
    with pytest.raises(c.ContractError):
        c.satisfaction_class(score, scale)


@pytest.mark.parametrize(
    ("topic", "kind", "centre", "device", "counter"),
    [
        ("hl/v1/ttphcc-ha-noi/hn-t01/rating", "rating", "ttphcc-ha-noi", "hn-t01", None),
        ("hl/v1/c1/d1/status", "status", "c1", "d1", None),
        ("hl/v1/c1/d1/config", "config", "c1", "d1", None),
        ("hl/v1/c1/qms/q01", "qms", "c1", None, "q01"),
    ],
)
def test_parse_topic_accepts_contract_topics(topic: str, kind: str, centre: str, device: str | None,
                                             counter: str | None) -> None:
    t = c.parse_topic(topic)
    assert (t.kind.value, t.centre, t.device, t.counter) == (kind, centre, device, counter)
    assert str(t) == topic


@pytest.mark.parametrize(
    "topic",
    [
        "hl/v1/c1/d1/ratings", "hl/v2/c1/d1/rating", "hl/v1/C1/d1/rating", "hl/v1/c1/d 1/rating",
        "hl/v1/c1/d1/rating/extra", "hl/v1/c1/d1", "hl/v1//d1/rating", "hl/v1/c1/d1/qms",
        "hl/v1/c1/" + "d" * 33 + "/rating", "", "hl/v1/c1/qms/Q1",
    ],
)
def test_parse_topic_rejects_malformed(topic: str) -> None:
    with pytest.raises(c.ContractError) as err:
        c.parse_topic(topic)
    assert err.value.reason == "bad_topic"


def test_topic_builders_validate_ids_and_reserve_qms() -> None:
    assert c.rating_topic("c1", "d1") == "hl/v1/c1/d1/rating"
    assert c.qms_topic("c1", "q01") == "hl/v1/c1/qms/q01"
    for bad in ("qms", "D1", "", "a/b", "+", "#"):
        with pytest.raises(c.ContractError):
            c.rating_topic("c1", bad)
    assert c.subscription(c.TopicKind.RATING, share_group="hl-ingest") == "$share/hl-ingest/hl/v1/+/+/rating"
    assert c.subscription(c.TopicKind.QMS) == "hl/v1/+/qms/+"


def test_topic_mismatch_names_the_field() -> None:
    event = c.parse_rating(valid_payloads("rating")["rating__top_score_touch"])
    with pytest.raises(c.ContractError) as err:
        c.check_rating_topic(c.parse_topic(f"hl/v1/{event.centre}/other-device/rating"), event)
    assert (err.value.reason, err.value.field) == ("topic_mismatch", "device")
    with pytest.raises(c.ContractError) as err:
        c.check_rating_topic(c.parse_topic(f"hl/v1/other-centre/{event.device}/rating"), event)
    assert (err.value.reason, err.value.field) == ("topic_mismatch", "centre")
    c.check_rating_topic(c.parse_topic(c.rating_topic(event.centre, event.device)), event)


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [c.new_event_id() for _ in range(200)]
    assert len(set(ids)) == 200
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    # the 48-bit millisecond prefix never goes backwards
    prefixes = [u.int >> 80 for u in parsed]
    assert prefixes == sorted(prefixes)


def test_models_are_frozen() -> None:
    event = c.parse_rating(valid_payloads("rating")["rating__top_score_touch"])
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        event.score = 1  # type: ignore[misc]


def test_schema_cli_writes_json_schema_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["contract", "schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{n}.schema.json" for n in sorted(c.SCHEMA_MODELS)]
    rating = json.loads((tmp_path / "rating_event.schema.json").read_text())
    assert rating["additionalProperties"] is False
    assert {"event_id", "score", "scale", "ticket", "rated_at"} <= set(rating["required"])
    assert rating["properties"]["device"]["pattern"] == c.ID_PATTERN


def test_schema_accepts_golden_payloads_with_a_generic_validator(tmp_path: Path) -> None:
    """A vendor without Python validates with any JSON Schema tool: check ours with `jsonschema` if present."""
    import jsonschema

    schemas = c.json_schemas()
    kinds = {"rating": "rating_event", "status": "device_status", "qms": "qms_event",
             "config": "device_config_update"}
    for name, raw in valid_payloads().items():
        jsonschema.validate(json.loads(raw), schemas[kinds[name.split("__")[0]]])


def test_validate_cli_reports_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": 1, "type": "ticket_closed"}')
    result = CliRunner().invoke(main, ["contract", "validate", "qms_event", str(bad)])
    assert result.exit_code == 1
    assert "invalid_field" in result.output


@pytest.mark.parametrize("payload", [
    b'{"v": 1, "x": ' + b"[" * 3900 + b"]" * 3900 + b"}",   # issue 12: 3,900 levels inside 8 KiB
    b"{" + b'"a":{' * 1300 + b"}" * 1301,
    b"[" * 8000,                                           # unterminated and deep
])
def test_deep_json_is_malformed_not_a_crash(payload: bytes) -> None:
    assert len(payload) <= c.MAX_PAYLOAD_BYTES
    for parse in (c.parse_rating, c.parse_status, c.parse_qms, c.parse_config_update):
        with pytest.raises(c.ContractError) as err:
            parse(payload)
        assert err.value.reason == "malformed_json", err.value.message
