"""Which rating topics this ingest instance subscribes to: a ticket's ratings must meet one judge.

``duplicate_ticket`` is decided by an in-memory index, so two ratings of one ticket must
reach the same instance. With ``integrity.partition.count = n`` > 1, the registry's centres
are dealt round-robin in sorted order (balanced to within one centre: a hash split two
centres onto one worker half of the time) and instance ``k`` takes every n-th, with one
subscription per centre, ``hl/v1/{centre}/+/rating``; no two partitions ever see one centre.

Ratings are subscribed directly, not through ``$share``, by default: Mosquitto 2.0.11 does not
restore a shared subscription after a broker restart, so ratings that terminals publish before
the ingest has subscribed again are PUBACKed to the terminal (which deletes them) and dropped
(tests/ingest/test_faults.py, broker restart mid-stream). A direct subscription is part of the
persistent session the broker restores and queues for. With ``ratings_shared = true`` the
filters are ``$share/{share_group}-p{k}/hl/v1/{centre}/+/rating``: several processes with the
same k split that partition's load and take over from each other, at the price of that window.
Status topics stay on the one shared group (no state behind them; a status lost in that window
is replaced by the next), and QMS topics are never shared: every instance knows every closed
ticket of its centres.

The broker's ACL is rendered from the same registry, so no device can publish for a
centre outside it; after a registry reload the service resubscribes (a new centre is
picked up, a removed one dropped, and a centre that changed hands is judged by its new owner
after that owner reloaded its ticket index from InfluxDB). Every instance reads the same
registry files, so all agree on the deal. Without a registry (development) or with one
partition, the single wildcard subscription of before is used.
"""

from __future__ import annotations

from broker.contract import QMS_BRIDGE_STATUS_FILTER, TOPIC_PREFIX, TopicKind, subscription
from broker.mqtt.subscriptions import RETAIN_DO_NOT_SEND, SubOptions

from .config import IngestConfig


def assignment(centres: list[str], count: int) -> dict[str, int]:
    """Centre -> partition: sorted ids dealt round-robin, the same in every process reading one registry."""
    return {c: i % count for i, c in enumerate(sorted(set(centres)))}


def partition_of(centre: str, centres: list[str], count: int) -> int:
    return assignment(centres, count)[centre]


def _no_replay(mqtt5: bool) -> int | SubOptions:
    """QoS 1 without retained replay on (re)subscribe, keeping the live retain flag (see retained.py)."""
    if not mqtt5:
        return 1  # 3.1.1 cannot opt out: retained.py rejects the replays idempotently
    return SubOptions(qos=1, retain_as_published=True, retain_handling=RETAIN_DO_NOT_SEND)


def my_centres(config: IngestConfig, centres: list[str] | None) -> list[str] | None:
    """This instance's centres, or None for "all of them" (one partition, or no registry)."""
    part = config.integrity.partition
    if part.count == 1 or centres is None:
        return None
    deal = assignment(centres, part.count)
    return [c for c in sorted(deal) if deal[c] == part.index]


def _rating_filters(config: IngestConfig, centres: list[str] | None, shared: bool) -> list[str]:
    group = config.share_group if shared else None
    mine = my_centres(config, centres)
    if mine is None:
        return [subscription(TopicKind.RATING, share_group=group)]
    prefix = f"$share/{group}-p{config.integrity.partition.index}/" if group else ""
    return [f"{prefix}{TOPIC_PREFIX}/{c}/+/{TopicKind.RATING.value}" for c in mine]


def other_rating_filters(config: IngestConfig, centres: list[str] | None) -> list[str]:
    """The rating filters of the OTHER ``ratings_shared`` setting: unsubscribed on every connect, so a
    persistent session made before the setting changed does not deliver every rating twice."""
    if not config.share_group:
        return []
    return _rating_filters(config, centres, not config.ratings_shared)


def subscriptions(config: IngestConfig, centres: list[str] | None) -> list[tuple[str, int | SubOptions]]:
    """Every (filter, options) of this instance.

    Ratings of its centres (shared with the other members of its partition), all statuses and
    QMS bridge statuses (shared: no state behind them), the QMS events of its centres (never shared: every
    member of the partition must know every closed ticket of those centres; ratings of other
    centres never reach this instance, so their QMS events are not needed here either).
    """
    group, mqtt5 = config.share_group, config.mqtt.protocol == "5"
    no_replay = _no_replay(mqtt5)
    # the QMS bridges' statuses too (one level deeper than hl/v1/+/+/status): the Fleet board shows them
    bridges = f"$share/{group}/{QMS_BRIDGE_STATUS_FILTER}" if group else QMS_BRIDGE_STATUS_FILTER
    status: list[tuple[str, int | SubOptions]] = [(subscription(TopicKind.STATUS, share_group=group), 1),
                                                        (bridges, 1)]
    # ratings: direct by default (see ratings_shared); with a partition, every filter names one centre,
    # so a device of another partition is never delivered here
    ratings = [(f, no_replay) for f in _rating_filters(config, centres, config.ratings_shared)]
    mine = my_centres(config, centres)
    if mine is None:
        return [*ratings, *status, (subscription(TopicKind.QMS), no_replay)]
    qms = [(f"{TOPIC_PREFIX}/{c}/{TopicKind.QMS.value}/+", no_replay) for c in mine]
    return [*ratings, *status, *qms]
