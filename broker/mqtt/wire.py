"""The MQTT packets a consumer exchanges, encoded and decoded by hand (OASIS MQTT 5.0 and 3.1.1).

Only what :mod:`broker.mqtt.consumer` needs: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ
and DISCONNECT out; CONNACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT and PUBLISH in. Section
numbers below are those of the MQTT 5.0 standard (3.1.1 differs only where noted).

PUBLISH is not decoded here: splitter.py decodes it inline while it splits the stream (a function
call per message was measurable at the ingest's rates, issue 14), with the layout of §3.3.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK = 5, 6, 7, 8, 9
UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = 10, 11, 12, 13, 14, 15

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # 3.1.1 and 5 (remaining length 0 = reason 0x00, normal: no will)

# §2.2.2.2 property identifiers the consumer sends or reads
SESSION_EXPIRY_INTERVAL = 0x11
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21

# property id -> value kind (§2.2.2.2): how many bytes to skip for the ones not read
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_KIND = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _FOUR,
    0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}

# §3.2.2.2 / §3.9.3 / §3.14.2.1 reason codes worth a name in a log line; 3.1.1 CONNACK codes 1-5
REASONS = {
    0x00: "success", 0x01: "granted QoS 1", 0x02: "granted QoS 2", 0x04: "disconnect with will",
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
    0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x91: "packet identifier in use", 0x93: "receive maximum exceeded", 0x95: "packet too large",
    0x97: "quota exceeded", 0x9C: "use another server", 0x9D: "server moved",
    0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
    0xA1: "subscription identifiers not supported", 0xA2: "wildcard subscriptions not supported",
}
REASONS_311 = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
               4: "bad user name or password", 5: "not authorized"}


class ProtocolError(Exception):
    """The broker sent bytes that are not the MQTT we speak: the connection is dropped and re-made."""


def reason_name(code: int, v5: bool = True) -> str:
    name = (REASONS if v5 else REASONS_311).get(code, "unknown")
    return f"{name} (0x{code:02X})"


def varint(n: int) -> bytes:
    """§1.5.5 variable byte integer."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when ``buf`` ends inside it (read more)."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if len(buf) - pos >= 4:
        raise ProtocolError("variable byte integer longer than 4 bytes")
    return None


def utf8(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return struct.pack(">H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def properties(props: dict[int, int]) -> bytes:
    """Integer properties only (all the consumer sends): id -> value, sized from §2.2.2.2."""
    out = bytearray()
    for ident, value in props.items():
        kind = _PROPERTY_KIND[ident]
        out.append(ident)
        out += struct.pack(">H" if kind == _TWO else ">I", value) if kind in (_TWO, _FOUR) else bytes([value])
    return varint(len(out)) + bytes(out)


def read_properties(buf: bytes, pos: int, end: int) -> tuple[dict[int, int | str | bytes], int]:
    """Decode a property block (§2.2.2); user properties are skipped. Returns (props, position after)."""
    got = read_varint(buf, pos)
    if got is None:
        raise ProtocolError("truncated property length")
    length, pos = got
    stop = pos + length
    if stop > end:
        raise ProtocolError("property block longer than its packet")
    props: dict[int, int | str | bytes] = {}
    while pos < stop:
        ident = buf[pos]
        kind = _PROPERTY_KIND.get(ident)
        pos += 1
        if kind is None:
            raise ProtocolError(f"unknown property 0x{ident:02X}")
        if kind == _BYTE:
            props[ident], pos = buf[pos], pos + 1
        elif kind == _TWO:
            props[ident], pos = int.from_bytes(buf[pos:pos + 2], "big"), pos + 2
        elif kind == _FOUR:
            props[ident], pos = int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            got = read_varint(buf, pos)
            if got is None:
                raise ProtocolError("truncated property")
            props[ident], pos = got
        else:
            n = int.from_bytes(buf[pos:pos + 2], "big")
            raw = bytes(buf[pos + 2:pos + 2 + n])
            pos += 2 + n
            if kind == _PAIR:  # user property: a second string follows; not used by the consumer
                pos += 2 + int.from_bytes(buf[pos:pos + 2], "big")
                continue
            props[ident] = raw.decode("utf-8", "replace") if kind == _UTF8 else raw
    if pos != stop:
        raise ProtocolError("property block overruns its length")
    return props, stop


def connect(client_id: str, *, v5: bool, keepalive_s: int, username: str | None, password: str | None,
            clean_start: bool, session_expiry_s: int | None, receive_maximum: int | None) -> bytes:
    """§3.1: no will (a consumer has nothing to announce), username/password when given."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0) | (
        0x02 if clean_start else 0)
    body = bytearray(utf8("MQTT"))
    body += bytes([5 if v5 else 4, flags]) + struct.pack(">H", keepalive_s)
    if v5:
        props: dict[int, int] = {}
        if session_expiry_s is not None:
            props[SESSION_EXPIRY_INTERVAL] = session_expiry_s
        if receive_maximum is not None:
            props[RECEIVE_MAXIMUM] = receive_maximum
        body += properties(props)
    body += utf8(client_id)
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return _packet(CONNECT << 4, bytes(body))


class ConnAck(NamedTuple):
    session_present: bool
    code: int  # 0 = accepted
    server_keepalive_s: int | None
    reason: str  # the broker's reason string (MQTT 5), or ""


def read_connack(body: bytes, v5: bool) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError("CONNACK shorter than 2 bytes")
    props: dict[int, int | str | bytes] = {}
    if v5 and len(body) > 2:
        props, _ = read_properties(body, 2, len(body))
    keepalive = props.get(SERVER_KEEP_ALIVE)
    reason = props.get(REASON_STRING, "")
    return ConnAck(bool(body[0] & 1), body[1], keepalive if isinstance(keepalive, int) else None,
                   reason if isinstance(reason, str) else "")


def subscribe(packet_id: int, filters: list[tuple[str, int]], v5: bool) -> bytes:
    """§3.8: ``filters`` as (topic filter, options byte); 3.1.1 takes the QoS bits only."""
    body = bytearray(struct.pack(">H", packet_id))
    if v5:
        body.append(0)  # no properties
    for topic_filter, options in filters:
        body += utf8(topic_filter) + bytes([options if v5 else options & 0x03])
    return _packet(SUBSCRIBE << 4 | 0x02, bytes(body))


def unsubscribe(packet_id: int, filters: list[str], v5: bool) -> bytes:
    body = bytearray(struct.pack(">H", packet_id))
    if v5:
        body.append(0)
    for topic_filter in filters:
        body += utf8(topic_filter)
    return _packet(UNSUBSCRIBE << 4 | 0x02, bytes(body))


def read_ack_codes(body: bytes, v5: bool) -> tuple[int, list[int]]:
    """SUBACK / UNSUBACK: (packet id, one reason code per filter; 3.1.1 UNSUBACK has none)."""
    if len(body) < 2:
        raise ProtocolError("acknowledgement shorter than 2 bytes")
    pos = 2
    if v5:
        _, pos = read_properties(body, 2, len(body))
    return int.from_bytes(body[:2], "big"), list(body[pos:])


def pubacks(packet_ids: list[int]) -> bytes:
    """One PUBACK per id (§3.4: remaining length 2 = reason 0x00 success, valid in 3.1.1 and 5), joined."""
    return struct.pack(f">{len(packet_ids)}I", *[0x40020000 | i for i in packet_ids])


def read_disconnect(body: bytes, v5: bool) -> tuple[int, str]:
    """A broker's DISCONNECT (MQTT 5 only): (reason code, reason string)."""
    if not v5 or not body:
        return 0, ""
    reason = ""
    if len(body) > 1:
        props, _ = read_properties(body, 1, len(body))
        text = props.get(REASON_STRING, "")
        reason = text if isinstance(text, str) else ""
    return body[0], reason
