"""'Cảm ơn' means durable: with the broker unreachable the rating waits in the service's outbox, survives the service
stopping, and is published and stored once when a new service starts on the same outbox."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx

from broker import weblink
from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from hailong.localstack import free_port
from tests.support.ingest import write_fleet
from tests.support.judging import judging, new_uid
from tests.web.conftest import HCM, web_config
from web.service import WebService


def test_a_rating_thanked_while_the_broker_is_unreachable_is_stored_after_a_restart(
        mosquitto: Any, influx_server: Any, tmp_path: Path) -> None:
    uid = new_uid()
    centre = f"d-{uid}"
    fleet = write_fleet(tmp_path / "fleet", centre, [(f"t-{uid}", "q1")], has_qms=True)
    ring = FleetState.for_fleet(fleet).link_keyring(centre)
    day = dt.datetime.now(HCM).date()
    token = weblink.sign(weblink.TicketLink(centre, "K-9", day, weblink.default_expiry(day, "Asia/Ho_Chi_Minh")),
                         ring.current, ring.signing_key().secret)
    with judging(mosquitto, influx_server, "webdur", uid, load_registry(fleet)) as j:
        j.send([j.close(centre, "q1", "K-9", time.time_ns() // 1_000_000 - 5000, officer="cb-a")])
        dead = web_config(fleet, tmp_path, mosquitto)
        dead = dead.model_copy(update={"mqtt": dead.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{free_port()}"})})
        svc = WebService(dead).start()
        try:
            reply = httpx.post(f"http://127.0.0.1:{svc.port}/r/{token}", content="score=3",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
            assert reply.status_code == 200 and "Cảm ơn" in reply.text
            assert svc.outbox.depth() == 1 and not svc.publisher.connected.is_set()
        finally:
            svc.stop()
        assert j.ratings() == []
        svc = WebService(web_config(fleet, tmp_path, mosquitto)).start()  # same outbox file, reachable broker
        try:
            eid = weblink.event_id(token)
            assert j.outcomes([eid], timeout=30) == {eid: "rating"}
            deadline = time.monotonic() + 10
            while svc.outbox.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert svc.outbox.depth() == 0 and svc.publisher.acked_count == 1
        finally:
            svc.stop()
        rows = j.ratings()
        assert [(r["score"], r["officer"]) for r in rows] == [(3, "cb-a")]
