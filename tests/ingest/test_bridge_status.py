"""Issue 13: the ingest stores each centre's QMS bridge status (hl/v1/{centre}/qms/bridge/status, one level
deeper than the terminals' statuses) as ``device_status`` with device ``qms-bridge``, for the Fleet board."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.contract import DeviceStatus, qms_bridge_status_topic
from hailong.localstack import InfluxServer, MosquittoServer
from tests.support.ingest import TCentre, TDevice, TFleet, now_ms
from tests.support.judging import Judged, judging, new_uid
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def j(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[Judged]:
    uid = new_uid()
    fleet = TFleet().add(TCentre(f"qc{uid}", province="hue"), TDevice(f"d1{uid}", f"qc{uid}", "q1"))
    fleet.add(TCentre(f"nq{uid}", province="hue", has_qms=False), TDevice(f"d2{uid}", f"nq{uid}", "q1"))
    with judging(mosquitto, influx_server, "bridge", uid, fleet) as judged:
        yield judged


def bridge_status(centre: str, state: str, device: str = "qms-bridge") -> bytes:
    return DeviceStatus(v=1, device=device, centre=centre, online=state != "offline", version="0.3.0",
                        state=state, at=now_ms()).to_json()


def test_a_bridge_status_is_stored_as_the_centres_qms_bridge_device(j: Judged) -> None:
    centre = f"qc{j.uid}"
    j.send([(qms_bridge_status_topic(centre), bridge_status(centre, "database_unreachable"))])
    q = f'SELECT * FROM "device_status" WHERE "centre" = \'{centre}\''
    rows = wait_until(lambda: j.db.rows(q), 15, what="the bridge's device_status")
    assert [(r["device"], r["online"], r["state"]) for r in rows] == [("qms-bridge", True, "database_unreachable")]


@pytest.mark.parametrize("case", ["other device", "other centre", "centre without QMS"])
def test_a_bridge_status_that_does_not_fit_its_topic_or_the_registry_is_rejected(j: Judged, case: str) -> None:
    centre = f"qc{j.uid}" if case != "centre without QMS" else f"nq{j.uid}"
    payload = {"other device": bridge_status(centre, "ok", device=f"d1{j.uid}"),
               "other centre": bridge_status(f"zz{j.uid}", "ok"),
               "centre without QMS": bridge_status(centre, "ok")}[case]
    j.send([(qms_bridge_status_topic(centre), payload)])
    q = f'SELECT * FROM "rejected" WHERE "topic" = \'{qms_bridge_status_topic(centre)}\''
    rows = wait_until(lambda: [r for r in j.db.rows(q) if r["payload"] == payload.decode()], 15, what="rejection")
    assert rows[0]["reason"] == ("unknown_device" if case == "centre without QMS" else "topic_mismatch")
    assert rows[0]["device"] == "qms-bridge" and rows[0]["province"] == "hue"
    assert not j.db.rows(f'SELECT * FROM "device_status" WHERE "centre" = \'{centre}\' AND "state" = \'ok\'')
