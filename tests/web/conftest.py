"""A web rating stack on the session's real Mosquitto and InfluxDB: a fleet directory with a QMS centre,
its link key in the fleet state, the real ingest judging, and ``hailong web serve``'s service on a free port."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from broker import weblink
from broker.fleet.credentials import FleetState
from broker.fleet.registry import load_registry
from tests.support.ingest import write_fleet
from tests.support.judging import Judged, judging, mqtt_settings, new_uid
from web.config import WebConfig
from web.service import WebService

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass
class WebStack:
    centre: str
    device: str
    counter: str
    fleet: Path
    judged: Judged
    service: WebService
    http: httpx.Client

    def link(self, ticket: str, *, day: dt.date | None = None, expires: int | None = None, counter: str | None = None,
             ticket_id: str | None = None, source: weblink.LinkSource = "qr") -> str:
        ring = FleetState.for_fleet(self.fleet).link_keyring(self.centre)
        day = day or dt.datetime.now(HCM).date()
        link = weblink.TicketLink(self.centre, ticket, day, expires or weblink.default_expiry(day, "Asia/Ho_Chi_Minh"),
                                  ticket_id=ticket_id, counter=counter, source=source)
        return weblink.sign(link, ring.current, ring.signing_key().secret)

    def submit(self, token: str, score: int, reasons: tuple[str, ...] = (), comment: str = "",
               lang: str = "vi") -> httpx.Response:
        data: list[tuple[str, str]] = [("lang", lang), ("score", str(score))]
        data += [("reason", r) for r in reasons]
        if comment:
            data.append(("comment", comment))
        return self.http.post(f"/r/{token}", content=urllib.parse.urlencode(data),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})

    def wait_published(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.service.outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.service.outbox.depth() == 0, "the web service did not get its PUBACKs"


def web_config(fleet: Path, tmp: Path, mosquitto: Any, **extra: Any) -> WebConfig:
    mqtt = mqtt_settings(mosquitto)
    data: dict[str, Any] = {"fleet": str(fleet), "outbox": str(tmp / "web-outbox.sqlite3"),
                            "mqtt": mqtt.model_dump(mode="json") | {"password": mqtt.secret()},
                            "http": {"host": "127.0.0.1", "port": 0}} | extra
    return WebConfig.model_validate(data)


@pytest.fixture
def web_stack(mosquitto: Any, influx_server: Any, tmp_path: Path) -> Iterator[WebStack]:
    with running_web_stack(mosquitto, influx_server, tmp_path) as stack:
        yield stack


@contextlib.contextmanager
def running_web_stack(mosquitto: Any, influx_server: Any, tmp_path: Path) -> Iterator[WebStack]:
    """The stack on the given broker (the device tests run it on their own, with a real terminal)."""
    uid = new_uid()
    centre, device, counter = f"hcc-{uid}", f"t-{uid}", "q1"
    fleet = write_fleet(tmp_path / "fleet", centre, [(device, counter), (f"u-{uid}", "q2")], has_qms=True)
    FleetState.for_fleet(fleet).link_keyring(centre)
    with judging(mosquitto, influx_server, "web", uid, load_registry(fleet)) as judged:
        service = WebService(web_config(fleet, tmp_path, mosquitto)).start()
        try:
            assert service.publisher.connected.wait(10), "web service did not connect to the broker"
            with httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=10) as http:
                yield WebStack(centre, device, counter, fleet, judged, service, http)
        finally:
            service.stop()
