"""Which rating topics this ingest instance subscribes to: a ticket's ratings must meet one judge.

``duplicate_ticket`` is decided by an in-memory index, so two ratings of one ticket must
reach the same process. With ``integrity.partition.count = n`` > 1, the registry's centres
are dealt round-robin in sorted order (balanced to within one centre: a hash split two
centres onto one worker half of the time) and instance ``k`` takes every n-th; the
instance's share is then dealt the same way among its ``worker_count`` worker processes
(set by the supervisor), so global partition = instance partition x worker and no two
processes of any instance ever see one centre. One subscription per centre,
``hl/v1/{centre}/+/rating``.

On every connect a process unsubscribes every rating and QMS filter of the registry it does
not own, in both forms (direct and ``$share``), and the wildcard forms: a persistent session
made when it owned other centres (another worker count, another partition, the other
``ratings_shared``) would otherwise keep delivering them, and a centre would have two judges.

Ratings are subscribed directly, not through ``$share``, by default: Mosquitto 2.0.11 does not
restore a shared subscription after a broker restart, so ratings that terminals publish before
the ingest has subscribed again are PUBACKed to the terminal (which deletes them) and dropped
(tests/ingest/test_faults.py, broker restart mid-stream). A direct subscription is part of the
persistent session the broker restores and queues for. With ``ratings_shared = true`` the
filters are ``$share/{share_group}/hl/v1/{centre}/+/rating`` (one filter per centre, so the group
needs no partition in its name): processes of several instances that own the same centre (the
same partition index and worker count) split its load and take over from each other, at the
price of that window.
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
    """This process's centres, or None for "all of them" (one partition and one worker, or no registry).

    The instance's share of the registry (``index`` of ``count``), dealt again among its workers
    (``worker_index`` of ``worker_count``); a draining process owns none.
    """
    part = config.integrity.partition
    if part.drain:
        return []
    if centres is None or (part.count == 1 and part.worker_count == 1):
        return None
    deal = assignment(centres, part.count)
    instance = [c for c in sorted(deal) if deal[c] == part.index]
    among_workers = assignment(instance, part.worker_count)
    return [c for c in instance if among_workers[c] == part.worker_index]


def _rating_filter(centre: str | None, group: str | None) -> str:
    """One centre's rating filter (``None``: every centre), direct or through ``$share/group``."""
    if centre is None:
        return subscription(TopicKind.RATING, share_group=group)
    prefix = f"$share/{group}/" if group else ""
    return f"{prefix}{TOPIC_PREFIX}/{centre}/+/{TopicKind.RATING.value}"


def _qms_filter(centre: str | None) -> str:
    return subscription(TopicKind.QMS) if centre is None else f"{TOPIC_PREFIX}/{centre}/{TopicKind.QMS.value}/+"


def _rating_filters(config: IngestConfig, centres: list[str] | None) -> list[str]:
    group = config.share_group if config.ratings_shared else None
    mine = my_centres(config, centres)
    if mine is None:
        return [_rating_filter(None, group)]
    return [_rating_filter(c, group) for c in mine]


def not_mine_filters(config: IngestConfig, centres: list[str] | None) -> list[str]:
    """Every rating and QMS filter this process may have held in another life and must not hold now.

    Unsubscribed on every connect (before subscribing): both rating forms (direct and
    ``$share``) and the QMS filter of each registry centre, and the wildcard forms, minus this
    process's own subscriptions. A draining process drops the status filters too.
    """
    groups = [None, config.share_group] if config.share_group else [None]
    every = [_rating_filter(c, g) for c in [None, *sorted(set(centres or []))] for g in groups]
    every += [_qms_filter(c) for c in [None, *sorted(set(centres or []))]]
    if config.integrity.partition.drain:
        every += [f for f, _ in _status_subscriptions(config)]
    mine = {f for f, _ in subscriptions(config, centres)}
    return [f for f in dict.fromkeys(every) if f not in mine]


def _status_subscriptions(config: IngestConfig) -> list[tuple[str, int | SubOptions]]:
    group = config.share_group
    # the QMS bridges' statuses too (one level deeper than hl/v1/+/+/status): the Fleet board shows them
    bridges = f"$share/{group}/{QMS_BRIDGE_STATUS_FILTER}" if group else QMS_BRIDGE_STATUS_FILTER
    return [(subscription(TopicKind.STATUS, share_group=group), 1), (bridges, 1)]


def subscriptions(config: IngestConfig, centres: list[str] | None) -> list[tuple[str, int | SubOptions]]:
    """Every (filter, options) of this instance.

    Ratings of its centres (shared with the other members of its partition), all statuses and
    QMS bridge statuses (shared: no state behind them), the QMS events of its centres (never shared: every
    member of the partition must know every closed ticket of those centres; ratings of other
    centres never reach this instance, so their QMS events are not needed here either).
    """
    if config.integrity.partition.drain:
        return []  # it only stores what its session already holds
    no_replay = _no_replay(config.mqtt.protocol == "5")
    status = _status_subscriptions(config)
    # ratings: direct by default (see ratings_shared); with a partition, every filter names one centre,
    # so a device of another partition is never delivered here
    ratings = [(f, no_replay) for f in _rating_filters(config, centres)]
    mine = my_centres(config, centres)
    if mine is None:
        return [*ratings, *status, (_qms_filter(None), no_replay)]
    return [*ratings, *status, *[(_qms_filter(c), no_replay) for c in mine]]
