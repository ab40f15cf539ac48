"""The consumer's MQTT codec, table-driven against the standard's examples (MQTT 5.0 §1.5.5, §2.2.2, §3)."""

from __future__ import annotations

import pytest

from broker.mqtt import wire

pytestmark = pytest.mark.fast  # pure codec: no broker


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integer_round_trip(value: int, encoded: bytes) -> None:
    assert wire.varint(value) == encoded
    assert wire.read_varint(b"\xaa" + encoded + b"\x00", 1) == (value, 1 + len(encoded))


def test_variable_byte_integer_limits() -> None:
    with pytest.raises(ValueError):
        wire.varint(268_435_456)
    assert wire.read_varint(b"\x80\x80", 0) is None, "incomplete: read more"
    with pytest.raises(wire.ProtocolError):
        wire.read_varint(b"\x80\x80\x80\x80\x01", 0)


def test_connect_packet_mqtt5_layout() -> None:
    pkt = wire.connect("svc.ingest", v5=True, keepalive_s=30, username="svc.ingest", password="pw",
                       clean_start=False, session_expiry_s=604_800, receive_maximum=2000)
    body = b"\x00\x04MQTT\x05\xc0\x00\x1e" + b"\x08\x11\x00\x09\x3a\x80\x21\x07\xd0" \
        + b"\x00\x0asvc.ingest" + b"\x00\x0asvc.ingest" + b"\x00\x02pw"
    assert pkt == b"\x10" + wire.varint(len(body)) + body


def test_connect_packet_311_clean_session_without_credentials() -> None:
    assert wire.connect("c", v5=False, keepalive_s=60, username=None, password=None, clean_start=True,
                        session_expiry_s=None, receive_maximum=None) == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"


def test_subscribe_options_and_311_qos_only() -> None:
    assert wire.subscribe(7, [("a/#", 0x29)], v5=True) == b"\x82\x09\x00\x07\x00\x00\x03a/#\x29"
    assert wire.subscribe(7, [("a/#", 0x29)], v5=False) == b"\x82\x08\x00\x07\x00\x03a/#\x01"


def test_pubacks_are_joined_four_byte_packets() -> None:
    assert wire.pubacks([1, 0x1234, 65535]) == b"\x40\x02\x00\x01" b"\x40\x02\x12\x34" b"\x40\x02\xff\xff"
    assert wire.pubacks([]) == b""


def test_properties_skip_user_properties_and_refuse_unknown_ids() -> None:
    block = b"\x21\x00\x0a" + b"\x26\x00\x01k\x00\x01v" + b"\x1f\x00\x02ok" + b"\x13\x00\x3c"
    props, end = wire.read_properties(wire.varint(len(block)) + block, 0, 1 + len(block))
    assert props == {wire.RECEIVE_MAXIMUM: 10, wire.REASON_STRING: "ok", wire.SERVER_KEEP_ALIVE: 60}
    assert end == 1 + len(block)
    with pytest.raises(wire.ProtocolError, match="unknown property 0x7F"):
        wire.read_properties(b"\x02\x7f\x00", 0, 3)
    with pytest.raises(wire.ProtocolError, match="longer than its packet"):
        wire.read_properties(b"\x09\x21\x00", 0, 3)


@pytest.mark.parametrize(("body", "v5", "expected"), [
    (b"\x00\x00", False, wire.ConnAck(False, 0, None, "")),
    (b"\x01\x00\x03\x13\x00\x0f", True, wire.ConnAck(True, 0, 15, "")),
    (b"\x00\x86\x00", True, wire.ConnAck(False, 0x86, None, "")),
    (b"\x00\x05", False, wire.ConnAck(False, 5, None, "")),
])
def test_connack(body: bytes, v5: bool, expected: wire.ConnAck) -> None:
    assert wire.read_connack(body, v5) == expected


def test_suback_disconnect_and_reason_names() -> None:
    assert wire.read_ack_codes(b"\x00\x07\x00\x01\x87", True) == (7, [1, 0x87])
    assert wire.read_ack_codes(b"\x00\x07\x01\x80", False) == (7, [1, 0x80])
    assert wire.read_disconnect(b"\x8e", True) == (0x8E, "")
    assert wire.read_disconnect(b"\x8e\x05\x1f\x00\x02hi", True) == (0x8E, "hi")
    assert wire.reason_name(0x8E) == "session taken over (0x8E)"
    assert wire.reason_name(4, v5=False) == "bad user name or password (0x04)"
    with pytest.raises(wire.ProtocolError):
        wire.read_connack(b"\x00", True)
