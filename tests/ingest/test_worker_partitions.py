"""Partitions that compose, honest readiness, one identity per worker (issue 20), against the rendered broker.

- Two instances (partition 0|1 of 2) x 2 workers: every centre has exactly one judge, so every
  second press is exactly one duplicate_ticket (before: both instances judged every centre).
- One instance going 2 -> 3 -> 2 workers: one judge per centre in every phase; what queued for
  worker 2 while nothing ran is drained and stored exactly once, then its session is ended.
- A worker whose login is refused keeps the group's /healthz at 503; more workers than rendered
  worker users is refused at start, naming the settings.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from broker.contract import rating_topic
from broker.fleet.credentials import FleetState
from broker.mqtt.handshake import has_session
from broker.mqtt.settings import MqttSettings
from ingest.config import IngestConfig
from ingest.partition import my_centres
from storage.influxql import InfluxQL
from tests.broker.fleet_broker import FleetBroker, Probe, close, probe, start_fleet_broker
from tests.support.ingest import rating
from tests.support.ingest_run import IngestRun
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

CENTRES = [f"pt-{i}" for i in range(6)]  # plain centres (no QMS): the terminal's officer stands


def _device(centre: str) -> str:
    return f"{centre}-q01"


def _add_centres(fleet: Path, state: FleetState) -> None:
    with (fleet / "centres.toml").open("a", encoding="utf-8") as fh:
        for c in CENTRES:
            fh.write(f'\n[centre.{c}]\nname = "Trung tâm {c}"\nprovince = "quang-ninh"\nhas_qms = false\n'
                     f'walkup_allowed = false\n\n[centre.{c}.counter.q01]\nlabel = "Quầy 1"\n'
                     f'services = ["ho-tich"]\nofficer = "cb-{c}"\n')
    with (fleet / "officers.toml").open("a", encoding="utf-8") as fh:
        for c in CENTRES:
            fh.write(f'\n[officer.cb-{c}]\nname = "Cán bộ {c}"\ncentre = "{c}"\n')
    with (fleet / "devices.toml").open("a", encoding="utf-8") as fh:
        for c in CENTRES:
            fh.write(f'\n[device.{_device(c)}]\ncentre = "{c}"\ncounter = "q01"\nhardware = "touch"\n')
    for c in CENTRES:
        state.password(_device(c))


def _devices(fb: FleetBroker) -> dict[str, Probe]:
    out = {}
    for c in CENTRES:
        p = probe(fb, f"dev-{c}", user=_device(c), password=fb.password(_device(c)))
        assert p.connect_rc is not None and not p.connect_rc.is_failure, p.connect_rc
        out[c] = p
    return out


def _press_twice(devices: dict[str, Probe], batch: int, tickets: int) -> None:
    """``tickets`` tickets per centre, each pressed twice (two event ids, a second press); the first press
    of every even ticket is "Không hài lòng" (score 1 of 4: one escalation each)."""
    for c, p in devices.items():
        infos = []
        for t in range(tickets):
            for press in range(2):
                seq = batch * 1000 + t * 2 + press
                score = 1 if press == 0 and t % 2 == 0 else 4 - press
                event = rating(c, _device(c), "q01", f"cb-{c}", f"B{batch}-{t:03d}", seq, score=score)
                infos.append(p.client.publish(rating_topic(c, _device(c)), event.to_json(), qos=1))
        wait_until(lambda: all(i.mid in p.puback for i in infos), 30, what="PUBACKs")  # noqa: B023


def _count(db: InfluxQL, what: str) -> int:
    q = ('SELECT count("score") FROM "rating"' if what == "rating" else
         "SELECT count(\"payload\") FROM \"rejected\" WHERE \"reason\" = 'duplicate_ticket'")
    return int(db.scalar(q) or 0)


def _expect(db: InfluxQL, ratings: int, why: str, *logs: IngestRun) -> None:
    """Exactly ``ratings`` stored and exactly as many duplicate_ticket: one judge for each ticket."""
    tail = "\n".join(i.log() for i in logs)
    wait_until(lambda: _count(db, "rating") >= ratings and _count(db, "dup") >= ratings, 60,
               what=f"{why}: {ratings} ratings and duplicates\n{tail}")
    time.sleep(1.5)  # a second judge would land its copy now
    assert (_count(db, "rating"), _count(db, "dup")) == (ratings, ratings), why


def test_two_instances_with_two_workers_each_judge_every_centre_once(tmp_path: Path, influx_db: InfluxQL) -> None:
    fb = start_fleet_broker(tmp_path, _add_centres, ingest_instances=2, ingest_workers=2)
    instances = [IngestRun(tmp_path, fb, influx_db, user=u, partition=(k, 2))
                 for k, u in enumerate(("svc.ingest", "svc.ingest.2"))]
    devices: dict[str, Probe] = {}
    try:
        for i in instances:
            i.start()
        for i in instances:
            wait_until(i.healthy, 90, what=f"{i.user} ready\n{i.log()}")
        # the deal the processes use: every centre of the registry exactly once over the 4 processes
        centres = sorted([*CENTRES, "qn-tthc", "dn-tthc"])
        owners = {}
        for k in (0, 1):
            for w in (0, 1):
                cfg = IngestConfig.model_validate({"integrity": {"partition": {
                    "index": k, "count": 2, "worker_index": w, "worker_count": 2}}})
                for c in my_centres(cfg, centres) or []:
                    owners.setdefault(c, []).append((k, w))
        assert all(len(owners[c]) == 1 for c in centres), owners
        devices = _devices(fb)
        _press_twice(devices, 1, 5)
        _expect(influx_db, len(CENTRES) * 5, "10 second presses per 2 centres", *instances)
        # one escalation per complaint (tickets 0, 2, 4 of each centre), not one per judge
        assert int(influx_db.scalar('SELECT count("score") FROM "escalation"') or 0) == len(CENTRES) * 3
        # every process stored only its own centres' ratings
        stored = {r["instance"]: float(r["ratings"]) for r in influx_db.rows(
            'SELECT last("ratings") AS "ratings" FROM "ingest_stats" GROUP BY "instance"')}
        expected = {("svc.ingest", "svc.ingest.2")[k] + (f".w{w}" if w else ""): 0.0
                    for k in (0, 1) for w in (0, 1)}
        for c in CENTRES:
            k, w = owners[c][0]
            expected[("svc.ingest", "svc.ingest.2")[k] + (f".w{w}" if w else "")] += 5
        wait_until(lambda: {r["instance"]: float(r["ratings"]) for r in influx_db.rows(
            'SELECT last("ratings") AS "ratings" FROM "ingest_stats" GROUP BY "instance"')} == expected, 10,
            what=f"per-worker stats {expected}, got {stored}")
    finally:
        close(*devices.values())
        for i in instances:
            i.kill()
        fb.server.stop()


def test_two_three_two_workers_one_judge_per_centre_and_no_session_left_queueing(
        tmp_path: Path, influx_db: InfluxQL) -> None:
    fb = start_fleet_broker(tmp_path, _add_centres, ingest_workers=3)
    inst = IngestRun(tmp_path, fb, influx_db, workers=2)
    devices = _devices(fb)
    w2 = MqttSettings.model_validate({"url": f"mqtts://127.0.0.1:{fb.options.tls_port}", "username": "svc.ingest.w2",
                                      "password": fb.password("svc.ingest.w2"), "ca_file": str(fb.out / "ca.crt")})
    stored = 0
    try:
        for phase, workers in enumerate((2, 3, 2), start=1):
            inst.set_workers(workers, influx_db, (0, 1))
            inst.start()
            wait_until(inst.healthy, 90, what=f"{workers} workers ready\n{inst.log()}")
            if phase == 3:
                # what queued for worker 2 while nothing ran (phase 2 -> 3 gap) is drained, then its session ends
                stored += len(CENTRES) * 3
                _expect(influx_db, stored, "ratings queued for the removed worker 2", inst)
                wait_until(lambda: "retired worker session svc.ingest.w2 drained and ended" in inst.log(), 60,
                           what=f"worker 2's session ended\n{inst.log()}")
                assert not has_session(w2, "svc.ingest.w2", 600), "nothing may queue for worker 2 any more"
                h = inst.health()
                assert h is not None and [w["index"] for w in h["workers"]] == [0, 1], h
            _press_twice(devices, phase, 4)
            stored += len(CENTRES) * 4
            _expect(influx_db, stored, f"phase {phase}: {workers} workers", inst)
            inst.stop()
            if phase == 2:
                _press_twice(devices, 20, 3)  # nothing runs: queued in the sessions of the 3-worker deal
    finally:
        close(*devices.values())
        inst.kill()
        fb.server.stop()


def test_a_refused_worker_login_keeps_the_group_not_ready(tmp_path: Path, influx_db: InfluxQL) -> None:
    fb = start_fleet_broker(tmp_path, ingest_workers=2)
    wrong = tmp_path / "secrets"
    wrong.mkdir()
    (wrong / "svc.ingest.w1.password").write_text("not-the-secret\n", encoding="utf-8")
    inst = IngestRun(tmp_path, fb, influx_db, workers=2, secrets=wrong).start()
    try:
        def worker1_refused() -> bool:
            h = inst.health()
            return bool(h and h["workers"][1]["mqtt"] == "refused")

        wait_until(worker1_refused, 60, what=f"worker 1 refused\n{inst.log()}")
        wait_until(lambda: (h := inst.health()) is not None and h["workers"][0]["ready"], 60,
                   what="worker 0 ready")
        for _ in range(3):  # and it stays so: never READY after a timeout, never alive
            h = inst.health()
            assert h is not None and h["alive"] is False and h["workers"][1]["ready"] is False, h
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{inst.health_port}/healthz", timeout=2) as r:
            pytest.fail(f"/healthz answered {r.status} while worker 1 cannot log in")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
    finally:
        inst.kill()
        fb.server.stop()


def test_more_workers_than_rendered_users_is_refused_at_start(tmp_path: Path) -> None:
    fb = start_fleet_broker(tmp_path, ingest_workers=2)
    try:
        db = InfluxQL("http://127.0.0.1:1", "unused")
        inst = IngestRun(tmp_path, fb, db, workers=3)
        res = subprocess.run([sys.executable, "-m", "hailong.cli", "ingest", "run", "--config", str(inst.config)],
                             env=inst.env, capture_output=True, text=True, timeout=60)
        assert res.returncode != 0
        assert "workers" in res.stderr and "worker_secrets_dir" in res.stderr and "svc.ingest.w2" in res.stderr
        assert "ingest_workers = 3" in res.stderr and "workers = 2" in res.stderr, res.stderr
    finally:
        fb.server.stop()
