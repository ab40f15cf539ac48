"""Which rating topics this ingest instance subscribes to: a ticket's ratings must meet one judge.

``duplicate_ticket`` is decided by an in-memory index, so two ratings of one ticket must
reach the same instance. With ``integrity.partition.count = n`` > 1, instance ``k`` takes
the centres whose crc32(centre id) mod n == k, one shared subscription per centre,
``$share/{share_group}-p{k}/hl/v1/{centre}/+/rating``: several processes with the same k
share that partition's load (and take over from each other), and no two partitions ever
see one centre. Status topics stay on the one shared group (no state behind them), and
QMS topics stay unshared: every instance knows every closed ticket.

The broker's ACL is rendered from the same registry, so no device can publish for a
centre outside it; after a registry reload the service resubscribes (a new centre is
picked up, a removed one dropped). Without a registry (development) or with one
partition, the single wildcard subscription of before is used.
"""

from __future__ import annotations

import zlib

from broker.contract import TOPIC_PREFIX, TopicKind, subscription

from .config import IngestConfig


def partition_of(centre: str, count: int) -> int:
    """Stable across processes and Python versions (unlike hash())."""
    return zlib.crc32(centre.encode("utf-8")) % count


def rating_filters(config: IngestConfig, centres: list[str] | None) -> list[str]:
    """The rating subscriptions of this instance."""
    part, group = config.integrity.partition, config.share_group
    if part.count == 1 or centres is None:
        return [subscription(TopicKind.RATING, share_group=group)]
    mine = [c for c in centres if partition_of(c, part.count) == part.index]
    # every filter names one centre, so a device of another partition is never delivered here
    prefix = f"$share/{group}-p{part.index}/" if group else ""
    return [f"{prefix}{TOPIC_PREFIX}/{c}/+/{TopicKind.RATING.value}" for c in mine]


def subscriptions(config: IngestConfig, centres: list[str] | None) -> list[tuple[str, int]]:
    """Every (filter, QoS) of this instance: its ratings, all statuses (shared), all QMS (unshared)."""
    group = config.share_group
    return [(f, 1) for f in rating_filters(config, centres)] + [
        (subscription(TopicKind.STATUS, share_group=group), 1),
        (subscription(TopicKind.QMS), 1),  # never shared: every instance must know every closed ticket
    ]
