"""duplicate_ticket across ingest instances (issue 15.7): partitioned rating subscriptions, real broker.

Two ingest instances (partition 0/2 and 1/2) on one share group: the two ratings of a ticket always meet
the same judge, so 10 doubly-rated tickets over two centres give exactly 10 ratings and 10 duplicate_ticket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.mqtt.subscriptions import RETAIN_DO_NOT_SEND, SubOptions
from hailong.localstack import InfluxServer, MosquittoServer
from ingest.config import IngestConfig
from ingest.partition import my_centres, not_mine_filters, partition_of, subscriptions
from ingest.registry import RegistryHolder
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, ingest_config, now_ms
from tests.support.judging import Judged, Msg, mqtt_settings, new_uid
from tests.support.waiting import wait_until


def centre_in(position: int, uid: str) -> str:
    """Centre ids that sort in ``position`` order (p0..., p1..., p2...): dealt 0, 1, 0 to two partitions."""
    return f"p{position}{uid}"


def start(cfg: IngestConfig, holder: RegistryHolder) -> IngestService:
    svc = IngestService(cfg, registry=holder).start()
    assert svc.wait_ready(30), "not subscribed: a message published now would not reach this new session"
    return svc


def test_two_instances_judge_each_ticket_once(mosquitto: MosquittoServer, influx_server: InfluxServer,
                                              tmp_path: Path) -> None:
    from device.publisher import RatingPublisher

    uid = new_uid()
    mqtt = mqtt_settings(mosquitto)
    db = InfluxQL(influx_server.url, f"t_partition_{uid}")
    db.create_database()
    c0, c1 = centre_in(0, uid), centre_in(1, uid)
    assert [partition_of(c, [c0, c1], 2) for c in (c0, c1)] == [0, 1]
    fleet = TFleet().add(TCentre(c0), TDevice(f"a{uid}", c0, "q1")).add(TCentre(c1), TDevice(f"b{uid}", c1, "q1"))
    current: dict[str, Any] = {"fleet": fleet}
    (tmp_path / "devices.toml").write_text("1")
    services: list[IngestService] = []
    pub = RatingPublisher(mqtt, f"pub-{uid}")
    try:
        for k in (0, 1):
            cfg = ingest_config(mqtt, db, f"{uid}{k}", share_group=f"g{uid}",
                                integrity={"hold_grace_s": 1.5, "partition": {"index": k, "count": 2}})
            holder = RegistryHolder.from_path(tmp_path, cfg.province, loader=lambda _p: current["fleet"])
            services.append(start(cfg, holder))
        assert pub.start()
        j = Judged(uid, db, pub, services)
        now = now_ms()
        closes: list[Msg] = []
        ratings: list[Msg] = []
        eids: list[str] = []
        for n in range(10):
            centre, device = (c0, f"a{uid}") if n % 2 == 0 else (c1, f"b{uid}")
            closes.append(j.close(centre, "q1", f"T{n:03d}", now - 5000 + n))
            for press in range(2):  # the citizen pressed twice (two event_ids)
                m, eid = j.rating(centre, device, "q1", f"T{n:03d}", rated=now - 1000 + press, score=4 - press)
                ratings.append(m)
                eids.append(eid)
        j.send(closes)
        j.send(ratings)
        got = j.outcomes(eids)
        assert sorted(got.values()) == ["duplicate_ticket"] * 10 + ["rating"] * 10
        assert len(db.rows('SELECT * FROM "rating"')) == 10
        # each centre met exactly one judge: instance k stored the 5 ratings of its centre
        assert [s.stats.ratings for s in services] == [5, 5]
        assert [s.stats.rejected.get("duplicate_ticket", 0) for s in services] == [5, 5]

        # a centre added to the registry is picked up by its partition after a reload (resubscribe)
        c2 = centre_in(2, uid)
        assert partition_of(c2, [c0, c1, c2], 2) == 0 and partition_of(c1, [c0, c1, c2], 2) == 1, "no centre moves"
        current["fleet"] = TFleet(dict(fleet.centres), dict(fleet.counters), dict(fleet.devices)).add(
            TCentre(c2), TDevice(f"c{uid}", c2, "q1"))
        (tmp_path / "devices.toml").write_text("22")
        for s in services:
            s.request_registry_reload()
        wait_until(lambda: all(s.registry.reloads == 1 for s in services), what="both instances reloaded")
        m, eid = j.rating(c2, f"c{uid}", "q1", "N001", rated=now_ms())
        wait_until(lambda: any(c2 in f for f, _ in services[0]._session.subscriptions)
                   and services[0]._session.subscribed.is_set(), what="partition 0 subscribed the new centre")
        j.send([j.close(c2, "q1", "N001", now_ms() - 2000), m])
        assert j.outcomes([eid]) == {eid: "rating"}
        assert services[0].stats.ratings == 6 and services[1].stats.ratings == 5
    finally:
        pub.stop()
        for s in services:
            s.stop()
        db.drop_database()


@pytest.mark.parametrize("shared", [False, True])
def test_subscription_lists(shared: bool) -> None:
    """Without a registry or with one partition: the single wildcard of before; else one filter per centre.
    Ratings direct by default (a shared subscription does not survive a Mosquitto 2.0.11 restart), through
    $share with ratings_shared; everything else is what every connect unsubscribes."""
    base = IngestConfig.model_validate({"share_group": "g", "ratings_shared": shared})
    wildcard = "$share/g/hl/v1/+/+/rating" if shared else "hl/v1/+/+/rating"
    assert [f for f, _ in subscriptions(base, None)] == \
        [wildcard, "$share/g/hl/v1/+/+/status", "$share/g/hl/v1/+/qms/bridge/status", "hl/v1/+/qms/+"]
    assert subscriptions(base, ["x1", "x2"])[0][0] == wildcard
    assert not_mine_filters(base, None) == ["$share/g/hl/v1/+/+/rating" if not shared else "hl/v1/+/+/rating"]
    split = IngestConfig.model_validate({"share_group": "g", "ratings_shared": shared,
                                         "integrity": {"partition": {"index": 1, "count": 3}}})
    centres = [f"c{i}" for i in range(30)]
    subs = [f for f, _ in subscriptions(split, centres)]
    mine = [c for c in sorted(centres) if partition_of(c, centres, 3) == 1]
    assert len(mine) == 10, "balanced: 30 centres, 3 partitions"
    prefix = "$share/g/" if shared else ""
    assert subs == ([f"{prefix}hl/v1/{c}/+/rating" for c in mine]
                    + ["$share/g/hl/v1/+/+/status", "$share/g/hl/v1/+/qms/bridge/status"]
                    + [f"hl/v1/{c}/qms/+" for c in mine]), "status shared; QMS never shared, only the partition's"
    dropped = set(not_mine_filters(split, centres))
    assert not dropped & set(subs), "never unsubscribes its own"
    for c in centres:  # every form of every centre it does not own, and the other form of its own
        forms = {f"hl/v1/{c}/+/rating", f"$share/g/hl/v1/{c}/+/rating"}
        assert forms - set(subs) <= dropped and len(forms & dropped) == (1 if c in mine else 2)
        assert (f"hl/v1/{c}/qms/+" in dropped) == (c not in mine)
    assert {"hl/v1/+/+/rating", "$share/g/hl/v1/+/+/rating", "hl/v1/+/qms/+"} <= dropped
    assert subscriptions(split, None)[0][0] == wildcard, "dev mode: one wildcard"
    assert not_mine_filters(IngestConfig.model_validate({"share_group": None}), None) == []


def test_an_instance_partition_is_divided_among_its_workers() -> None:
    """Global partition = instance partition x worker: two instances of 2 and 3 workers (any mix) cover every
    centre exactly once, each worker within one centre of its fair share; a draining process owns none."""
    centres = [f"centre-{i:02d}" for i in range(41)]
    owner: dict[str, list[tuple[int, int]]] = {}
    for index, workers in ((0, 2), (1, 3)):
        sizes = []
        for w in range(workers):
            cfg = IngestConfig.model_validate({"integrity": {"partition": {
                "index": index, "count": 2, "worker_index": w, "worker_count": workers}}})
            got = my_centres(cfg, centres)
            assert got is not None
            sizes.append(len(got))
            for c in got:
                owner.setdefault(c, []).append((index, w))
        assert max(sizes) - min(sizes) <= 1, sizes
    assert sorted(owner) == sorted(centres) and all(len(o) == 1 for o in owner.values()), "one judge per centre"
    # the instance's own share is unchanged by its worker count
    inst = IngestConfig.model_validate({"integrity": {"partition": {"index": 1, "count": 2}}})
    assert my_centres(inst, centres) == sorted(c for c, o in owner.items() if o[0][0] == 1)
    drain = IngestConfig.model_validate({"share_group": "g", "integrity": {"partition": {
        "worker_index": 5, "worker_count": 2, "drain": True}}})
    assert my_centres(drain, centres) == [] and subscriptions(drain, centres) == []
    assert "$share/g/hl/v1/+/+/status" in not_mine_filters(drain, centres)
    with pytest.raises(ValueError, match="worker_index"):
        IngestConfig.model_validate({"integrity": {"partition": {"worker_index": 2, "worker_count": 2}}})


def test_ratings_and_qms_are_subscribed_without_retained_replay() -> None:
    """MQTT 5: retain handling 2 (no replay on subscribe) + retain as published on ratings and QMS (issue 12.2)."""
    split = {"share_group": "g", "integrity": {"partition": {"index": 0, "count": 2}}}
    for cfg in (IngestConfig.model_validate({"share_group": "g"}), IngestConfig.model_validate(split)):
        for topic, opts in subscriptions(cfg, ["c1", "c2", "c3"]):
            if topic.endswith("/status"):
                assert opts == 1, "a retained status (last will) is wanted on subscribe"
                continue
            assert isinstance(opts, SubOptions), topic
            assert opts.retain_handling == RETAIN_DO_NOT_SEND and opts.retain_as_published
    v311 = IngestConfig.model_validate({"mqtt": {"protocol": "3.1.1"}})
    assert all(o == 1 for _, o in subscriptions(v311, None)), "3.1.1 has no options; retained.py handles replays"
