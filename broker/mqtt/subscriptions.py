"""What a client subscribes to, without paho: the ingest's lean consumer encodes these itself,
the paho session (session.py) converts them to paho's SubscribeOptions.

A subscription is ``(topic filter, options)`` where options is a plain QoS (0..2, what MQTT
3.1.1 can say) or :class:`SubOptions` for MQTT 5's extra flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# MQTT 5 retain handling (section 3.8.3.1): when the broker replays retained messages
RETAIN_SEND_ON_SUBSCRIBE = 0
RETAIN_SEND_IF_NEW_SUB = 1
RETAIN_DO_NOT_SEND = 2


@dataclass(frozen=True, slots=True)
class SubOptions:
    """MQTT 5 subscription options (the byte after each filter in SUBSCRIBE)."""

    qos: int = 1
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = RETAIN_SEND_ON_SUBSCRIBE

    def byte(self) -> int:
        """The options byte of MQTT 5, 3.8.3.1: QoS bits 0-1, no-local 2, RAP 3, retain handling 4-5."""
        return self.qos | self.no_local << 2 | self.retain_as_published << 3 | self.retain_handling << 4


Subscription = tuple[str, int | SubOptions]


def options_byte(options: int | SubOptions) -> int:
    """The SUBSCRIBE options byte: a bare QoS under MQTT 3.1.1, all of :class:`SubOptions` under 5."""
    return options if isinstance(options, int) else options.byte()


def subscription_changes(current: Sequence[Subscription],
                         fresh: Sequence[Subscription]) -> tuple[list[Subscription], list[str]]:
    """(subscriptions to add, filters to drop) to go from ``current`` to ``fresh`` (paho session and consumer)."""
    old, new = dict(current), dict(fresh)
    return [(f, o) for f, o in fresh if f not in old], [f for f in old if f not in new]
