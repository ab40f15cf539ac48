"""Signed rating links: ``https://<host>/r/<token>`` for one ticket instance.

A citizen who left the counter without rating can rate the same ticket later from a
phone: a QR code on the queue slip, or a link in the SMS/Zalo message the one-stop
system sends. The token names the ticket instance (DESIGN.md: centre, number, service
day, and the vendor's ticket id when the QMS has one) and an expiry, and carries an
HMAC-SHA256 tag (first 12 bytes: 96 bits) under a per-centre key, so a link cannot be
forged, altered or enumerated. The key id travels in the token: a centre rotates to a
new key while links signed with the old one keep working until they expire.

This module is the formula (docs/web-rating.md states it byte by byte with test
vectors, for a QMS vendor or SMS sender computing links themselves); standard library
only. The keys live in the fleet state (broker/fleet/credentials.py).

Layout (big-endian), then base64url without padding::

    0      version            1
    1      key id             1..255, per centre
    2      flags              bits 0-2 source (0 none, 1 qr, 2 sms, 3 zalo, 4 terminal-qr)
                              bit 3 a vendor ticket id follows, bit 4 a counter follows
    3..6   expires            uint32, UTC epoch seconds
    7..8   service day        uint16, days since 1970-01-01 (the centre's local date)
    ...    centre             1 length byte + ASCII   ([a-z0-9-]{1,32})
    ...    ticket number      1 length byte + ASCII   (broker.contract.TICKET_PATTERN)
    ...    counter            1 length byte + ASCII   (only with flag bit 4)
    ...    vendor ticket id   1 length byte + ASCII   (only with flag bit 3)
    last 12 bytes            HMAC-SHA256(key, b"hailong-link-v1\\x00" + everything before)[:12]

Which key signs: a link of source ``terminal-qr`` is made by a counter terminal and MUST name its
counter; it verifies only under that counter's terminal key, ``HMAC-SHA256(centre key,
b"hailong-terminal-link-v1\\x00" + counter)`` (:func:`terminal_key`), derived from the centre key its
key id names. Every other link verifies under the centre key only. A terminal holds only its own
counter's key (its provisioning bundle), so a stolen terminal can sign neither another counter's link
nor a slip/SMS/Zalo link; the ingest further refuses a terminal link whose ticket closed elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import struct
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from broker.contract import ID_PATTERN, TICKET_PATTERN, VENDOR_TICKET_ID_PATTERN

VERSION: Final = 1
TAG_BYTES: Final = 12  # 96 bits: the issue asks >= 80
DOMAIN: Final = b"hailong-link-v1\x00"  # a hailong link tag is never valid as any other HMAC of the same key
TERMINAL_DOMAIN: Final = b"hailong-terminal-link-v1\x00"  # a derived terminal key is never a link tag
MAX_TOKEN_CHARS: Final = 248  # the longest valid token (every field at its maximum) is 247 characters
EPOCH_DAY: Final = dt.date(1970, 1, 1)

LinkSource = Literal["qr", "sms", "zalo", "terminal-qr"]
SOURCES: Final[tuple[LinkSource | None, ...]] = (None, "qr", "sms", "zalo", "terminal-qr")
_FLAG_VENDOR: Final = 0x08
_FLAG_COUNTER: Final = 0x10
_ID_RE = re.compile(ID_PATTERN)
_TICKET_RE = re.compile(TICKET_PATTERN)
_VENDOR_RE = re.compile(VENDOR_TICKET_ID_PATTERN)
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# the namespace of web rating event ids (uuid5 of the token's tag): fixed forever, documented
EVENT_NAMESPACE: Final = uuid.UUID("5b0c3a62-7e4f-5f41-9a51-6c1f2e0d7a10")


class LinkError(ValueError):
    """A token that is not a valid link. ``reason``: malformed | unknown_key | bad_signature | expired."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TicketLink:
    """What a link names: one ticket instance of one centre, and until when it may be rated."""

    centre: str
    ticket: str
    day: dt.date  # service day in the centre's local time
    expires: int  # UTC epoch seconds
    ticket_id: str | None = None  # the QMS's own ticket id, when it has one
    counter: str | None = None  # known when the link is made after the close (SMS, terminal)
    source: LinkSource | None = None

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.centre):
            raise ValueError(f"centre {self.centre!r} must match {ID_PATTERN}")
        if not _TICKET_RE.match(self.ticket):
            raise ValueError(f"ticket {self.ticket!r} must match {TICKET_PATTERN}")
        if self.counter is not None and not _ID_RE.match(self.counter):
            raise ValueError(f"counter {self.counter!r} must match {ID_PATTERN}")
        if self.ticket_id is not None and not _VENDOR_RE.match(self.ticket_id):
            raise ValueError(f"ticket id {self.ticket_id!r} must match {VENDOR_TICKET_ID_PATTERN}")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {SOURCES[1:]}")
        if self.source == "terminal-qr" and self.counter is None:
            raise ValueError("a terminal-qr link names the counter whose terminal signed it")
        if not 0 <= (self.day - EPOCH_DAY).days <= 0xFFFF:
            raise ValueError(f"service day {self.day} is out of range")
        if not 0 < self.expires <= 0xFFFFFFFF:
            raise ValueError(f"expiry {self.expires} is out of range (epoch seconds)")


def _field(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes([len(raw)]) + raw


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, DOMAIN + body, hashlib.sha256).digest()[:TAG_BYTES]


def body_bytes(link: TicketLink, key_id: int) -> bytes:
    """The signed part of a token (everything before the tag)."""
    if not 1 <= key_id <= 255:
        raise ValueError(f"key id {key_id} must be 1..255")
    flags = SOURCES.index(link.source)
    if link.ticket_id is not None:
        flags |= _FLAG_VENDOR
    if link.counter is not None:
        flags |= _FLAG_COUNTER
    out = struct.pack(">BBBIH", VERSION, key_id, flags, link.expires, (link.day - EPOCH_DAY).days)
    out += _field(link.centre) + _field(link.ticket)
    if link.counter is not None:
        out += _field(link.counter)
    if link.ticket_id is not None:
        out += _field(link.ticket_id)
    return out


def sign(link: TicketLink, key_id: int, key: bytes) -> str:
    """The token of ``link`` under the centre's key ``key_id``."""
    body = body_bytes(link, key_id)
    return _b64(body + tag(key, body))


@dataclass(frozen=True, slots=True)
class Unverified:
    """A token decoded but not yet checked: which centre and key id to check it with."""

    link: TicketLink
    key_id: int
    body: bytes
    tag: bytes


def decode(token: str) -> Unverified:
    """Parse a token's layout; raise LinkError("malformed") on anything else. Does NOT check the tag."""
    if not (0 < len(token) <= MAX_TOKEN_CHARS) or not _B64URL_RE.match(token) or len(token) % 4 == 1:
        raise LinkError("malformed", "not a rating link")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkError("malformed", "not a rating link") from None
    if _b64(raw) != token:  # one token per link: no second spelling through unused trailing bits
        raise LinkError("malformed", "not a rating link")
    if len(raw) < 9 + 2 + 2 + TAG_BYTES:
        raise LinkError("malformed", "link too short")
    body, sig = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    version, key_id, flags, expires, days = struct.unpack_from(">BBBIH", body)
    if version != VERSION or flags & ~0x1F or (flags & 0x07) >= len(SOURCES) or key_id == 0:
        raise LinkError("malformed", "unknown link version or flags")
    pos = 9
    fields: list[str] = []
    for present in (True, True, bool(flags & _FLAG_COUNTER), bool(flags & _FLAG_VENDOR)):
        if not present:
            fields.append("")
            continue
        if pos >= len(body) or pos + 1 + body[pos] > len(body):
            raise LinkError("malformed", "link truncated")
        n = body[pos]
        try:
            fields.append(body[pos + 1:pos + 1 + n].decode("ascii"))
        except UnicodeDecodeError:
            raise LinkError("malformed", "link is not ASCII") from None
        pos += 1 + n
    if pos != len(body):
        raise LinkError("malformed", "trailing bytes in link")
    centre, ticket, counter, ticket_id = fields
    try:
        link = TicketLink(centre=centre, ticket=ticket, day=EPOCH_DAY + dt.timedelta(days=days), expires=expires,
                          ticket_id=ticket_id or None, counter=counter or None, source=SOURCES[flags & 0x07])
    except ValueError as exc:
        raise LinkError("malformed", f"link fields invalid: {exc}") from None
    return Unverified(link, key_id, body, sig)


def terminal_key(centre_key: bytes, counter: str) -> bytes:
    """The link key of the terminal(s) at ``counter``: HMAC-SHA256(centre key, TERMINAL_DOMAIN + counter).

    Whoever holds it can sign ``terminal-qr`` links naming this counter, and nothing else (:func:`verify`)."""
    if not _ID_RE.match(counter):
        raise ValueError(f"counter {counter!r} must match {ID_PATTERN}")
    return hmac.new(centre_key, TERMINAL_DOMAIN + counter.encode("ascii"), hashlib.sha256).digest()


def parse_terminal_secret(text: str) -> tuple[int, bytes]:
    """A terminal's provisioned link key, ``<key id>:<64+ hex>`` (FleetState.terminal_link_secret); ValueError."""
    kid, sep, hexkey = text.strip().partition(":")
    try:
        key_id, secret = int(kid), bytes.fromhex(hexkey)
    except ValueError:
        raise ValueError("a terminal link key is <key id>:<hex secret>") from None
    if not sep or not 1 <= key_id <= 255 or len(secret) < 32:
        raise ValueError("a terminal link key is <key id 1..255>:<hex secret of >= 32 bytes>")
    return key_id, secret


def verify(token: str, keys: dict[int, bytes], now_s: int,
           revoked: Mapping[int, Collection[str]] | None = None) -> TicketLink:
    """The link of a genuine, unexpired token; ``keys`` are the centre's key id -> secret (every live key).

    The caller looks the centre's keys up from :func:`decode`'s ``link.centre`` (the centre is inside the
    signed body, so a token moved to another centre's keys fails the tag). A ``terminal-qr`` token is
    checked under the terminal key of the counter it names, derived from the centre key of its key id,
    unless ``revoked`` (key id -> counters, :meth:`Keyring.revoked`) lists that counter for that key (a
    stolen terminal); any other token under the centre key itself.
    """
    raw = decode(token)
    key = keys.get(raw.key_id)
    if key is None:
        raise LinkError("unknown_key", "link signed with a key this centre does not have (retired or foreign)")
    if raw.link.source == "terminal-qr":
        assert raw.link.counter is not None  # TicketLink refuses a terminal link without its counter
        if revoked is not None and raw.link.counter in revoked.get(raw.key_id, ()):
            raise LinkError("unknown_key", f"terminal key of counter {raw.link.counter} under key {raw.key_id} "
                                           "was revoked")
        key = terminal_key(key, raw.link.counter)
    if not hmac.compare_digest(tag(key, raw.body), raw.tag):
        raise LinkError("bad_signature", "link signature does not match")
    if now_s > raw.link.expires:
        raise LinkError("expired", "link expired")
    return raw.link


def event_id(token: str) -> str:
    """The rating's event id: one per link, so a double submit or a replayed POST is one rating.

    uuid5 of the token's tag (the 12 bytes that make the token unique), as hex, under :data:`EVENT_NAMESPACE`.
    """
    raw = decode(token)
    return str(uuid.uuid5(EVENT_NAMESPACE, raw.tag.hex()))


def fingerprint(token: str) -> str:
    """What logs may show of a token: a short hash (never the token, which is a bearer credential)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


def default_expiry(day: dt.date, timezone: str, days: int = 7) -> int:
    """End of the service day in the centre's zone plus ``days``: a slip printed before service is valid as
    long as a link sent after the close (the close is on that day)."""
    from zoneinfo import ZoneInfo

    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=ZoneInfo(timezone))
    return int((end + dt.timedelta(days=days)).timestamp())


def url(base: str, token: str) -> str:
    """``https://<host>/r/<token>`` (base is the public origin, without a trailing slash)."""
    return f"{base.rstrip('/')}/r/{token}"


# --------------------------------------------------------------------------- a centre's keys

@dataclass(frozen=True, slots=True)
class LinkKey:
    key_id: int
    secret: bytes
    created: int  # epoch seconds
    retired: int | None = None  # when a newer key replaced it (it still verifies until links expire)
    # counters whose terminal key derived from this key no longer verifies (a stolen terminal)
    revoked_counters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Keyring:
    """One centre's link keys: the current one signs, every kept one verifies."""

    centre: str
    current: int
    keys: tuple[LinkKey, ...]

    def secrets(self) -> dict[int, bytes]:
        return {k.key_id: k.secret for k in self.keys}

    def signing_key(self) -> LinkKey:
        return next(k for k in self.keys if k.key_id == self.current)

    def revoked(self) -> dict[int, tuple[str, ...]]:
        """Key id -> counters whose terminal links under that key no longer verify (:func:`verify`)."""
        return {k.key_id: k.revoked_counters for k in self.keys if k.revoked_counters}

    def terminal_key(self, counter: str) -> tuple[int, bytes]:
        """(key id, secret) a terminal at ``counter`` signs with now: derived from the current key."""
        return self.current, terminal_key(self.signing_key().secret, counter)

    def render(self) -> str:
        lines = [f"# rating-link keys of centre {self.centre}: secret, never commit (hailong web key rotate)",
                 f"current = {self.current}"]
        for k in sorted(self.keys, key=lambda k: k.key_id):
            lines += ["", f"[key.{k.key_id}]", f'secret = "{k.secret.hex()}"', f"created = {k.created}"]
            if k.retired is not None:
                lines.append(f"retired = {k.retired}")
            if k.revoked_counters:
                lines.append("revoked_counters = [" + ", ".join(f'"{c}"' for c in k.revoked_counters) + "]")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, centre: str, text: str, where: str) -> Keyring:
        """Read a keyring file; ValueError naming ``where`` and the key on any problem."""
        import tomllib

        try:
            data = tomllib.loads(text)
            current = int(data["current"])
            keys = tuple(
                LinkKey(int(kid), bytes.fromhex(str(v["secret"])), int(v["created"]),
                        int(v["retired"]) if "retired" in v else None,
                        tuple(str(c) for c in v.get("revoked_counters", ())))
                for kid, v in data.get("key", {}).items())
        except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: not a rating-link keyring ({type(exc).__name__}: {exc})") from None
        if not any(k.key_id == current for k in keys):
            raise ValueError(f"{where}: current = {current} names no [key.{current}]")
        if any(len(k.secret) < 32 or not 1 <= k.key_id <= 255 for k in keys):
            raise ValueError(f"{where}: every key needs an id 1..255 and a secret of >= 32 bytes (64 hex)")
        bad = [c for k in keys for c in k.revoked_counters if not _ID_RE.match(c)]
        if bad:
            raise ValueError(f"{where}: revoked_counters {bad} are not counter ids ({ID_PATTERN})")
        return cls(centre, current, keys)

    def rotated(self, now_s: int, keep_s: int, new_secret: bytes, revoke_counters: Collection[str] = ()) -> Keyring:
        """A new current key; the old one retired (verifying until ``keep_s`` after now), expired ones dropped.

        ``keep_s`` is the longest a link may live (a token's expiry is never further than that from
        when it was signed), so a key retired longer ago than that signed nothing still valid.
        ``revoke_counters``: the terminal keys of these counters stop verifying under every kept key at
        once (a stolen terminal); the new key derives fresh ones for the terminals re-provisioned there.
        """
        for c in revoke_counters:
            if not _ID_RE.match(c):
                raise ValueError(f"counter {c!r} must match {ID_PATTERN}")
        kept = [k for k in self.keys if k.retired is None or now_s - k.retired <= keep_s]
        kept = [LinkKey(k.key_id, k.secret, k.created, now_s if k.key_id == self.current else k.retired,
                        tuple(sorted({*k.revoked_counters, *revoke_counters}))) for k in kept]
        used = {k.key_id for k in kept}
        new_id = next((i for i in [*range(self.current + 1, 256), *range(1, self.current)] if i not in used), None)
        if new_id is None:
            raise ValueError(f"centre {self.centre}: 255 keys still verify links; wait for old ones to expire")
        return Keyring(self.centre, new_id, (*kept, LinkKey(new_id, new_secret, now_s)))
