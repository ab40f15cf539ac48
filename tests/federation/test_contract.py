"""The CentreDay contract: topics, digest, the revision rule, refusals with stable reasons."""

from __future__ import annotations

import json

import pytest

from broker.contract import ContractError
from broker.federation import (
    CentreDay,
    centre_day_digest,
    check_centre_day,
    local_topic,
    national_topic,
    parse_centre_day,
    parse_national_topic,
    province_prefix,
    revision_verdict,
)


def _msg(revision: int = 1_765_000_000_000, **counts: int) -> CentreDay:
    base = dict(rated=10, not_satisfied=2, satisfied=3, very_satisfied=5, walkups=1, served=14)
    return CentreDay.build("hue", "hue-c1", "2026-12-01", revision, **(base | counts))


def test_round_trip_and_size() -> None:
    msg = _msg()
    body = msg.to_json()
    assert parse_centre_day(body) == msg
    assert len(body) < 300  # the prototype measured ~210 B; counts only
    assert set(json.loads(body)) == {"v", "province", "centre", "day", "revision", "rated", "not_satisfied",
                                     "satisfied", "very_satisfied", "walkups", "served", "digest"}


def test_topics() -> None:
    assert local_topic("hue-c1", "2026-12-01") == "fed/hue-c1/2026-12-01"
    assert national_topic("hue", "hue-c1", "2026-12-01") == "national/hue/hue-c1/2026-12-01"
    assert province_prefix("hue") == "national/hue/"
    t = parse_national_topic("national/hue/hue-c1/2026-12-01")
    assert (t.province, t.centre, t.day) == ("hue", "hue-c1", "2026-12-01")
    for bad in ("national/hue/hue-c1", "national/HUE/c/2026-12-01", "national/hue/c/2026-02-30",
                "hl/v1/hue/c/2026-12-01", "national/hue/c/2026-12-01/x"):
        with pytest.raises(ContractError) as exc:
            parse_national_topic(bad)
        assert exc.value.reason == "bad_topic"


def test_digest_covers_every_count_and_the_identity() -> None:
    msg = _msg()
    assert msg.digest == msg.expected_digest()
    digests = {msg.digest}
    for name in ("rated", "not_satisfied", "satisfied", "very_satisfied", "walkups", "served"):
        counts = list(msg.counts)
        counts[["rated", "not_satisfied", "satisfied", "very_satisfied", "walkups", "served"].index(name)] += 1
        digests.add(centre_day_digest("hue", "hue-c1", "2026-12-01", tuple(counts)))
    digests.add(centre_day_digest("hue", "hue-c2", "2026-12-01", msg.counts))
    digests.add(centre_day_digest("hue", "hue-c1", "2026-12-02", msg.counts))
    assert len(digests) == 9
    # the revision is not in the digest: the same counts re-sent are recognisably the same
    assert _msg(revision=5).digest == msg.digest


def test_checks_refuse_with_reasons() -> None:
    msg = _msg()
    topic = parse_national_topic("national/hue/hue-c1/2026-12-01")
    check_centre_day(topic, msg)
    for other in ("national/hcm/hue-c1/2026-12-01", "national/hue/hue-c2/2026-12-01",
                  "national/hue/hue-c1/2026-12-02"):
        with pytest.raises(ContractError) as exc:
            check_centre_day(parse_national_topic(other), msg)
        assert exc.value.reason == "topic_mismatch"
    forged = json.loads(msg.to_json()) | {"rated": 11, "satisfied": 4}
    with pytest.raises(ContractError) as exc:
        check_centre_day(topic, parse_centre_day(json.dumps(forged)))
    assert exc.value.reason == "bad_digest"


@pytest.mark.parametrize(("change", "reason"), [
    ({"rated": 9}, "invalid_field"),  # classes do not add up
    ({"rated": -1}, "invalid_field"),
    ({"day": "2026-13-01"}, "invalid_field"),
    ({"v": 2}, "unsupported_version"),
    ({"officer": "o1"}, "invalid_field"),  # nothing but counts leaves a province
    ({"revision": 0}, "invalid_field"),
])
def test_malformed_payloads(change: dict[str, object], reason: str) -> None:
    data = json.loads(_msg().to_json()) | change
    with pytest.raises(ContractError) as exc:
        parse_centre_day(json.dumps(data))
    assert exc.value.reason == reason
    with pytest.raises(ContractError) as exc:
        parse_centre_day(b"\xff{")
    assert exc.value.reason == "malformed_json"


def test_revision_rule() -> None:
    msg = _msg(revision=100)
    assert revision_verdict(None, msg) == "store"
    assert revision_verdict((99, "x" * 32), msg) == "store"
    assert revision_verdict((100, msg.digest), msg) == "duplicate"
    assert revision_verdict((100, "0" * 32), msg) == "conflict"
    assert revision_verdict((101, msg.digest), msg) == "older"
