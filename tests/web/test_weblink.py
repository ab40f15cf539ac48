"""Rating links: the documented formula (vectors recomputed from scratch), forgery, expiry, rotation."""

from __future__ import annotations

import base64
import dataclasses
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
    signer = key
    if vec["source"] == "terminal-qr":  # a counter terminal's own key, derived from the centre key
        signer = hmac.new(key, b"hailong-terminal-link-v1\x00" + vec["counter"].encode(), hashlib.sha256).digest()
        assert signer.hex() == vec["terminal_key_hex"]
    tag = hmac.new(signer, b"hailong-link-v1\x00" + body, hashlib.sha256).digest()[:12]
    assert tag.hex() == vec["tag_hex"]
    token = base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()
    assert token == vec["token"]
    assert str(uuid.uuid5(uuid.UUID("5b0c3a62-7e4f-5f41-9a51-6c1f2e0d7a10"), tag.hex())) == vec["event_id"]
    # and the module agrees in both directions
    link = w.verify(token, {vec["key_id"]: key}, now_s=vec["expires"])
    assert (link.centre, link.ticket, link.day.isoformat(), link.counter, link.ticket_id, link.source) == (
        vec["centre"], vec["ticket"], vec["day"], vec["counter"], vec["ticket_id"], vec["source"])
    assert w.sign(link, vec["key_id"], signer) == token
    assert w.event_id(token) == vec["event_id"]


def test_the_documented_vectors_include_a_terminal_signed_link() -> None:
    assert any(v["source"] == "terminal-qr" and v["counter"] for v in _vectors())


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


# --------------------------------------------------------------------------- a counter terminal's own key

TERMINAL = w.TicketLink(centre="ttphcc-ha-noi", ticket="A-1024", day=dt.date(2025, 11, 22), expires=1764435600,
                        counter="q01", source="terminal-qr")


def test_a_terminal_key_signs_its_own_counters_terminal_links_only() -> None:
    own = w.terminal_key(KEY, "q01")
    assert own != KEY and own != w.terminal_key(KEY, "q02") and len(own) == 32
    token = w.sign(TERMINAL, 1, own)
    assert w.verify(token, {1: KEY}, now_s=0).counter == "q01"
    # the same key cannot sign another counter's link (the tag is checked under q02's derived key)
    other = dataclasses.replace(TERMINAL, counter="q02")
    with pytest.raises(w.LinkError) as err:
        w.verify(w.sign(other, 1, own), {1: KEY}, now_s=0)
    assert err.value.reason == "bad_signature"
    # nor any non-terminal link (slip, SMS, Zalo, none): those verify under the centre key only
    for source in ("qr", "sms", "zalo", None):
        forged = w.sign(dataclasses.replace(TERMINAL, source=source), 1, own)
        with pytest.raises(w.LinkError) as err:
            w.verify(forged, {1: KEY}, now_s=0)
        assert err.value.reason == "bad_signature", source
    # and the centre key itself does not make a valid terminal link (it is checked under the derived key)
    with pytest.raises(w.LinkError) as err:
        w.verify(w.sign(TERMINAL, 1, KEY), {1: KEY}, now_s=0)
    assert err.value.reason == "bad_signature"


def test_a_forged_counter_field_fails_the_tag() -> None:
    token = w.sign(TERMINAL, 1, w.terminal_key(KEY, "q01"))
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    forged_raw = raw.replace(b"\x03q01", b"\x03q02")
    assert forged_raw != raw
    forged = base64.urlsafe_b64encode(forged_raw).rstrip(b"=").decode()
    assert w.decode(forged).link.counter == "q02"
    with pytest.raises(w.LinkError) as err:
        w.verify(forged, {1: KEY}, now_s=0)
    assert err.value.reason == "bad_signature"


def test_a_terminal_link_without_its_counter_is_malformed() -> None:
    with pytest.raises(ValueError, match="names the counter"):
        dataclasses.replace(TERMINAL, counter=None)
    body = w.body_bytes(dataclasses.replace(TERMINAL, source="qr", counter=None), 1)
    body = body[:2] + bytes([4]) + body[3:]  # flags: source terminal-qr, no counter
    token = base64.urlsafe_b64encode(body + w.tag(KEY, body)).rstrip(b"=").decode()
    with pytest.raises(w.LinkError) as err:
        w.verify(token, {1: KEY}, now_s=0)
    assert err.value.reason == "malformed"


def test_provisioned_terminal_secret_and_revocation_on_rotation(tmp_path: Path) -> None:
    state = FleetState(tmp_path / "state")
    ring = state.link_keyring("ttphcc-ha-noi")
    text = state.terminal_link_secret("ttphcc-ha-noi", "q01")
    key_id, secret = w.parse_terminal_secret(text)
    assert key_id == ring.current and secret == w.terminal_key(ring.signing_key().secret, "q01")
    q01 = w.sign(TERMINAL, key_id, secret)
    q02_link = dataclasses.replace(TERMINAL, counter="q02")
    q02 = w.sign(q02_link, *w.parse_terminal_secret(state.terminal_link_secret("ttphcc-ha-noi", "q02")))
    # rotating and revoking q01 (a stolen terminal): its links fail at once, q02's keep working
    t0 = 1_764_000_000
    rotated = state.rotate_link_key("ttphcc-ha-noi", now_s=t0, revoke_counters=("q01",))
    reread = state.link_keyring("ttphcc-ha-noi")
    assert reread.revoked() == {key_id: ("q01",)} == rotated.revoked()
    with pytest.raises(w.LinkError) as err:
        w.verify(q01, reread.secrets(), t0, reread.revoked())
    assert err.value.reason == "unknown_key"
    assert w.verify(q02, reread.secrets(), t0, reread.revoked()).counter == "q02"
    # the replacement terminal at q01 gets a key derived from the new current key: valid
    fresh = w.sign(TERMINAL, *w.parse_terminal_secret(state.terminal_link_secret("ttphcc-ha-noi", "q01")))
    assert w.decode(fresh).key_id == reread.current != key_id
    assert w.verify(fresh, reread.secrets(), t0, reread.revoked()).counter == "q01"
    # a non-terminal link under the retired key is untouched by the revocation
    slip = w.sign(LINK, key_id, ring.signing_key().secret)
    assert w.verify(slip, reread.secrets(), t0, reread.revoked()).ticket == "A-1024"
    for bad in ("", "1", "x:00", f"0:{secret.hex()}", f"1:{secret.hex()[:40]}", "256:" + "00" * 32):
        with pytest.raises(ValueError):
            w.parse_terminal_secret(bad)
