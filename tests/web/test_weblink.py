"""Rating links: the documented formula (vectors recomputed from scratch), forgery, expiry, rotation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import struct
import uuid
from pathlib import Path

import pytest

from broker import weblink as w
from broker.fleet.credentials import FleetState

DOC = Path(__file__).resolve().parents[2] / "docs" / "web-rating.md"
SOURCES = {None: 0, "qr": 1, "sms": 2, "zalo": 3, "terminal-qr": 4}


def _vectors() -> list[dict]:
    m = re.search(r"```json test-vectors\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert m, "docs/web-rating.md lost its test-vectors block"
    return json.loads(m.group(1))


@pytest.mark.parametrize("vec", _vectors(), ids=lambda v: v["token"][:12])
def test_documented_vectors_follow_the_documented_formula(vec: dict) -> None:
    # the formula exactly as the table in docs/web-rating.md says it, not through broker.weblink
    key = bytes.fromhex(vec["key_hex"])
    flags = SOURCES[vec["source"]] | (0x08 if vec["ticket_id"] else 0) | (0x10 if vec["counter"] else 0)
    days = (dt.date.fromisoformat(vec["day"]) - dt.date(1970, 1, 1)).days
    body = struct.pack(">BBBIH", 1, vec["key_id"], flags, vec["expires"], days)
    for text in (vec["centre"], vec["ticket"], vec["counter"], vec["ticket_id"]):
        if text:
            body += bytes([len(text)]) + text.encode("ascii")
    assert body.hex() == vec["body_hex"]
    tag = hmac.new(key, b"hailong-link-v1\x00" + body, hashlib.sha256).digest()[:12]
    assert tag.hex() == vec["tag_hex"]
    token = base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()
    assert token == vec["token"]
    assert str(uuid.uuid5(uuid.UUID("5b0c3a62-7e4f-5f41-9a51-6c1f2e0d7a10"), tag.hex())) == vec["event_id"]
    # and the module agrees in both directions
    link = w.verify(token, {vec["key_id"]: key}, now_s=vec["expires"])
    assert (link.centre, link.ticket, link.day.isoformat(), link.counter, link.ticket_id, link.source) == (
        vec["centre"], vec["ticket"], vec["day"], vec["counter"], vec["ticket_id"], vec["source"])
    assert w.sign(link, vec["key_id"], key) == token
    assert w.event_id(token) == vec["event_id"]


KEY = bytes(range(32))
LINK = w.TicketLink(centre="ttphcc-ha-noi", ticket="A-1024", day=dt.date(2025, 11, 22), expires=1764435600,
                    source="qr")


def test_a_link_fits_a_qr_on_a_slip_and_one_sms() -> None:
    long = w.TicketLink(centre="a" * 32, ticket="B" * 32, day=dt.date(2026, 1, 1), expires=1_800_000_000,
                        counter="c" * 32, ticket_id="x" * 64, source="terminal-qr")
    assert len(w.sign(long, 255, KEY)) <= w.MAX_TOKEN_CHARS
    assert len(w.url("https://dg.hue.gov.vn", w.sign(LINK, 1, KEY))) <= 85


@pytest.mark.parametrize("position", range(0, 56, 3))
def test_any_altered_character_is_refused(position: int) -> None:
    token = w.sign(LINK, 1, KEY)
    ch = token[position]
    altered = token[:position] + ("A" if ch != "A" else "B") + token[position + 1:]
    with pytest.raises(w.LinkError) as err:
        w.verify(altered, {1: KEY}, now_s=1764000000)
    assert err.value.reason in {"malformed", "bad_signature", "unknown_key"}


def test_forged_expired_foreign_and_garbage_tokens_are_refused_with_a_reason() -> None:
    token = w.sign(LINK, 1, KEY)
    with pytest.raises(w.LinkError, match="expired"):
        w.verify(token, {1: KEY}, now_s=LINK.expires + 1)
    assert w.verify(token, {1: KEY}, now_s=LINK.expires).ticket == "A-1024"  # the last second still counts
    with pytest.raises(w.LinkError) as err:
        w.verify(w.sign(LINK, 1, b"k" * 32), {1: KEY}, now_s=0)  # another centre's key
    assert err.value.reason == "bad_signature"
    with pytest.raises(w.LinkError) as err:
        w.verify(token, {2: KEY}, now_s=0)
    assert err.value.reason == "unknown_key"
    for junk in ("", "x", "../../etc/passwd", "A" * 201, token + "=", token + "A", "%2F" + token, "é" + token):
        with pytest.raises(w.LinkError) as err:
            w.verify(junk, {1: KEY}, now_s=0)
        assert err.value.reason in {"malformed", "bad_signature"}


def test_rotation_keeps_issued_links_valid_until_they_expire(tmp_path: Path) -> None:
    state = FleetState(tmp_path / "state")
    first = state.link_keyring("ttphcc-ha-noi")
    assert (tmp_path / "state" / "weblink" / "ttphcc-ha-noi.toml").stat().st_mode & 0o777 == 0o600
    old_token = w.sign(LINK, first.current, first.signing_key().secret)
    t0 = 1_764_000_000
    second = state.rotate_link_key("ttphcc-ha-noi", now_s=t0)
    assert second.current != first.current
    assert w.verify(old_token, state.link_keyring("ttphcc-ha-noi").secrets(), now_s=t0).ticket == "A-1024"
    new_token = w.sign(LINK, second.current, second.signing_key().secret)
    assert w.verify(new_token, second.secrets(), now_s=t0).ticket == "A-1024"
    # a third rotation after the keep period drops the first key: its links had expired anyway
    third = state.rotate_link_key("ttphcc-ha-noi", now_s=t0 + FleetState.LINK_KEY_KEEP_S + 1)
    with pytest.raises(w.LinkError) as err:
        w.verify(old_token, third.secrets(), now_s=t0)
    assert err.value.reason == "unknown_key"
    assert second.current in third.secrets()


def test_event_id_is_one_per_link_and_the_token_is_never_the_fingerprint() -> None:
    a, b = w.sign(LINK, 1, KEY), w.sign(LINK, 1, b"z" * 32)
    assert w.event_id(a) == w.event_id(a) != w.event_id(b)
    assert a not in w.fingerprint(a) and len(w.fingerprint(a)) == 12
