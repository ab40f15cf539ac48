"""The PUBLISH splitter over buffers: whole, split at every byte, partial, malformed (MQTT 5.0 §3.3).

broker/mqtt/splitter.py is what the ingest's consumer runs on every 256 KiB read; a buffer may
end anywhere inside a packet, and the bytes after the last whole packet must stay for the next read.
"""

from __future__ import annotations

import pytest

from broker.mqtt import wire
from broker.mqtt.splitter import split_packets

Delivered = tuple[str, bytes, int, int, bool]


def publish(topic: str, payload: bytes, mid: int = 0, qos: int = 1, retain: bool = False, v5: bool = True,
            props: bytes = b"\x00") -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (mid.to_bytes(2, "big") if qos else b"") + (props if v5 else b"") + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + wire.varint(len(body)) + body


def run(buf: bytes, v5: bool = True) -> tuple[list[Delivered], list[tuple[int, bytes]], int]:
    got: list[Delivered] = []
    control: list[tuple[int, bytes]] = []
    used = split_packets(buf, v5, {}, lambda *m: got.append(m), lambda f, b: control.append((f, b)))
    return got, control, used


def stream() -> tuple[bytes, list[Delivered]]:
    """Three PUBLISHes (1-, 2- and 3-byte remaining lengths, a retained one, QoS 0) and a PINGRESP."""
    small = publish("hl/v1/c1/d1/rating", b'{"a":1}', mid=1)
    mid = publish("hl/v1/c1/d2/rating", b"x" * 300, mid=2, retain=True)
    big = publish("hl/v1/c1/qms/q1", b"y" * 20_000, qos=0)
    buf = small + b"\xd0\x00" + mid + big
    want = [("hl/v1/c1/d1/rating", b'{"a":1}', 1, 1, False), ("hl/v1/c1/d2/rating", b"x" * 300, 2, 1, True),
            ("hl/v1/c1/qms/q1", b"y" * 20_000, 0, 0, False)]
    return buf, want


def test_whole_packets_are_all_delivered_in_order() -> None:
    buf, want = stream()
    got, control, used = run(buf)
    assert got == want and control == [(0xD0, b"")] and used == len(buf)


def test_a_buffer_split_at_every_byte_delivers_the_same_and_keeps_each_tail() -> None:
    buf, want = stream()
    for cut in range(len(buf) + 1):
        got1, ctl1, used1 = run(buf[:cut])
        assert used1 <= cut
        got2, ctl2, used2 = run(buf[used1:])
        assert got1 + got2 == want and used1 + used2 == len(buf), cut
        assert len(ctl1 + ctl2) == 1


def test_an_incomplete_remaining_length_waits_for_more() -> None:
    pkt = publish("t", b"z" * 20_000, mid=9)
    assert run(pkt[:2]) == ([], [], 0)  # the first byte of a 3-byte varint only
    assert run(pkt[:3]) == ([], [], 0)


def test_mqtt_311_has_no_property_block() -> None:
    pkt = publish("hl/v1/c/d/rating", b"{}", mid=7, v5=False)
    assert run(pkt, v5=False)[0] == [("hl/v1/c/d/rating", b"{}", 7, 1, False)]


def test_publisher_properties_are_skipped_short_and_long() -> None:
    short = b"\x05\x02\x00\x00\x00\x3c"  # message expiry interval
    long_block = b"\x26" + b"\x00\x01k" + b"\x00\x80" + b"v" * 128  # one user property of 131 bytes
    long_props = wire.varint(len(long_block)) + long_block
    for props in (short, long_props):
        got, _, _ = run(publish("t/x", b"payload", mid=3, props=props))
        assert got == [("t/x", b"payload", 3, 1, False)]


def test_a_non_utf8_topic_is_delivered_by_a_replacement_name_not_a_crash() -> None:
    pkt = b"\x32" + wire.varint(2 + 2 + 2 + 1 + 2) + b"\x00\x02\xff\xfe" + b"\x00\x05" + b"\x00" + b"{}"
    got, _, _ = run(pkt)
    assert got == [("\ufffd\ufffd", b"{}", 5, 1, False)]


@pytest.mark.parametrize(("case", "pkt"), [
    ("QoS 2 on a QoS 1 subscription", b"\x34\x06\x00\x01t\x00\x01\x00"),
    ("topic runs past the packet", b"\x32\x04\x00\x09ab"),
    ("shorter than a topic length", b"\x32\x01\x00"),
    ("properties run past the packet", b"\x32\x06\x00\x01t\x00\x01\x09"),
])
def test_malformed_publishes_are_protocol_errors(case: str, pkt: bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        run(pkt)


def test_a_failing_message_hook_does_not_stop_the_stream() -> None:
    buf, want = stream()
    seen: list[str] = []

    def hook(topic: str, *_: object) -> None:
        seen.append(topic)
        raise RuntimeError("a bug in the ingest")

    assert split_packets(buf, True, {}, hook, lambda f, b: None) == len(buf)
    assert seen == [w[0] for w in want]


def test_the_topic_cache_is_bounded() -> None:
    from broker.mqtt import splitter

    topics: dict[bytes, str] = {}
    buf = b"".join(publish(f"t/{i}", b"", mid=i + 1) for i in range(50))
    old = splitter.TOPIC_CACHE
    splitter.TOPIC_CACHE = 10
    try:
        split_packets(buf, True, topics, lambda *m: None, lambda f, b: None)
    finally:
        splitter.TOPIC_CACHE = old
    assert len(topics) <= 10
