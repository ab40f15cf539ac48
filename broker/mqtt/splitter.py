"""Splitting a byte stream from the broker into MQTT packets: a pure function over a buffer.

The lean consumer (consumer.py) reads the socket in 256 KiB chunks; a chunk holds many whole
packets and usually ends inside one. :func:`split_packets` hands every whole packet of the
buffer to its hook (PUBLISH decoded inline, everything else as first byte + body) and returns
how many bytes it consumed: the tail of a partial packet stays for the next read. It touches no
socket, so tests feed it split, partial and malformed buffers directly (tests/fast).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import wire

log = logging.getLogger("hailong.mqtt")

# topic, payload, packet id (0 for QoS 0), QoS, retain flag
MessageHook = Callable[[str, bytes, int, int, bool], None]
# first byte, body: every packet that is not a PUBLISH
ControlHook = Callable[[int, bytes], None]

TOPIC_CACHE = 65_536  # distinct topics decoded once (one per device and kind); cleared when full


def split_packets(buf: bytes, v5: bool, topics: dict[bytes, str], on_message: MessageHook,
                  on_control: ControlHook, who: str = "consumer") -> int:
    """Deliver every whole packet at the start of ``buf``; return the bytes consumed.

    ``topics`` caches decoded topic names between calls. An exception in ``on_message`` is logged
    and swallowed (one bad message must not end the session); ``on_control`` and protocol errors
    (:class:`wire.ProtocolError`) propagate: the caller drops the connection.
    """
    n = len(buf)
    pos = 0
    while n - pos >= 2:
        first = buf[pos]
        # remaining length (§1.5.5), one- and two-byte forms inline: a rating PUBLISH is
        # 128..16,383 bytes, and a call per message was 3 % of a worker (issue 14 profile)
        b = buf[pos + 1]
        if b < 0x80:
            length, start = b, pos + 2
        elif pos + 2 < n and buf[pos + 2] < 0x80:
            length, start = (b & 0x7F) | (buf[pos + 2] << 7), pos + 3
        else:
            got = wire.read_varint(buf, pos + 1)
            if got is None:
                break
            length, start = got
        end = start + length
        if end > n:
            break
        if first & 0xF0 == 0x30:  # PUBLISH (§3.3), decoded here: once per message
            qos = (first >> 1) & 3
            if length < 2:
                raise wire.ProtocolError("PUBLISH shorter than its topic length")
            tlen = (buf[start] << 8) | buf[start + 1]
            p = start + 2 + tlen
            if p + (2 if qos else 0) > end:
                raise wire.ProtocolError("PUBLISH topic or packet id runs past the packet")
            key = buf[start + 2:p]
            topic = topics.get(key)
            if topic is None:
                if len(topics) >= TOPIC_CACHE:
                    topics.clear()
                # the broker checks UTF-8; "replace" keeps one bad topic from looping reconnects
                # (the ingest refuses it by name, and acks it)
                topic = topics[key] = key.decode("utf-8", "replace")
            mid = 0
            if qos:
                if qos == 2:
                    raise wire.ProtocolError("QoS 2 PUBLISH on a QoS 1 subscription")
                mid = (buf[p] << 8) | buf[p + 1]
                p += 2
            if v5:
                if p >= end:
                    raise wire.ProtocolError("truncated PUBLISH properties")
                plen = buf[p]
                if plen < 0x80:
                    p += 1 + plen
                else:
                    got = wire.read_varint(buf, p)
                    if got is None:
                        raise wire.ProtocolError("truncated PUBLISH properties")
                    p = got[1] + got[0]
                if p > end:
                    raise wire.ProtocolError("PUBLISH properties run past the packet")
            try:
                on_message(topic, buf[p:end], mid, qos, bool(first & 1))
            except Exception:  # a hook bug must not end the session
                log.exception("message hook of %s failed on %s", who, topic)
        else:
            on_control(first, buf[start:end])
        pos = end
    return pos
