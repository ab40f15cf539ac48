"""Retained messages where the design has none (ratings, QMS events).

Mosquitto 2.0.11 cannot refuse the retain flag per topic: its ACL has no retain
control, ``retain_available false`` is global (statuses and configs need retain)
and a plugin would have to be built and shipped for every broker. So a device can
publish its rating retained, and a broker would hand it to the ingest again on
every (re)subscribe. The ingest defends itself twice:

- it subscribes to ratings and QMS with MQTT 5 "retain handling 2" (never send
  retained messages on subscribe) and "retain as published" (a live message keeps
  its retain flag, so the ingest can see it);
- a rating or QMS message that arrives with retain=1 is never judged or stored: it
  becomes one ``rejected`` point, reason ``retained_not_allowed``, at a time derived
  from the payload itself, so a replay (MQTT 3.1.1 sessions cannot opt out of
  them) rewrites the same point instead of adding one.

The ingest has read-only ACL rights, so it cannot clear the retained message by
publishing an empty one; it simply never sees it again.
"""

from __future__ import annotations

import json
import zlib

from broker.contract import MAX_EPOCH_MS, ContractError, TopicKind, parse_topic

from .handlers import Handled, MessageHandler

RETAINED_NOT_ALLOWED = "retained_not_allowed"
# Where a retained message is never legitimate. Statuses (last will) and configs are retained by design.
NO_RETAIN_KINDS = frozenset({TopicKind.RATING, TopicKind.QMS})
# Fields that carry the event's own time, in the order they are tried.
_TIME_FIELDS = ("rated_at", "at", "sent_at")


def retain_forbidden(topic_name: str) -> bool:
    try:
        return parse_topic(topic_name).kind in NO_RETAIN_KINDS
    except ContractError:
        return False  # a bad topic is rejected by the handler for what it is


def stable_time_ns(payload: bytes, received_ns: int) -> int:
    """The payload's own time (ms) + a payload-hash ns offset; the arrival time if it names none."""
    offset = zlib.crc32(payload) % 1_000_000
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        for name in _TIME_FIELDS:
            ms = doc.get(name)
            if isinstance(ms, int) and not isinstance(ms, bool) and 0 < ms <= MAX_EPOCH_MS:
                return ms * 1_000_000 + offset
    return received_ns


def reject_retained(handler: MessageHandler, topic_name: str, payload: bytes, received_ns: int) -> Handled:
    """The one ``rejected`` point of a retained rating/QMS message (identical for every replay)."""
    try:
        topic = parse_topic(topic_name)
        centre, device = topic.centre, topic.device or ""
    except ContractError:
        centre = device = ""
    return handler.reject(RETAINED_NOT_ALLOWED, topic_name, payload,
                          "retained publish on a topic without retained messages; not judged, not stored",
                          received_ns, centre=centre, device=device,
                          exact_ns=stable_time_ns(payload, received_ns))
