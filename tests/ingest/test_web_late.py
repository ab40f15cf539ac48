"""Web ratings days after the close (issue 22): a link lives 7 days after its service day, far beyond the ingest's
recent-ticket index (``tickets_per_counter`` per counter, ``index_lookback_s`` after a restart). The ingest looks
the ticket up in InfluxDB (ingest/lookup.py) and still credits the QMS close's officer, and still sees a counter
rating of days ago (first wins across channels). Field-shaped data: queue numbers restart every morning, so the
same number on each service day is another ticket, served by another officer."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

from broker.contract import web_rating_topic
from broker.fleet.registry import load_registry
from tests.support.ingest import start_ingest, write_fleet
from tests.support.judging import HCM, Judged, Msg, judging, local_ms, mqtt_settings, new_uid
from tests.support.waiting import wait_until

PER_DAY = 20  # tickets per counter and day, every morning from 001 again: queue A at q1, queue B at q2
SMALL_INDEX = {"tickets_per_counter": 16, "web_hold_s": 2.0}  # 16 < the 40 tickets per counter since


def day_of(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, HCM).date().isoformat()


def web(j: Judged, centre: str, number: str, day: str, *, rated: int, score: int = 4) -> tuple[Msg, str]:
    """A web rating as svc.web publishes it: the link's ticket number and service day, any counter."""
    eid = str(uuid.uuid4())
    end_of_day = int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(23, 59, 59), HCM).timestamp() * 1000)
    data: dict[str, Any] = {
        "v": 1, "event_id": eid, "seq": next(j.seq), "device": "web", "centre": centre, "counter": "web",
        "officer": "web", "ticket": number, "ticket_id": None, "scale": 4, "score": score, "reasons": [],
        "input": "web", "source": "sms", "service_day": day, "link_expires_at": end_of_day + 7 * 86_400_000,
        "closed_at": None, "rated_at": rated, "sent_at": rated, "boot_id": "web-test", "mono_ms": 1000}
    return (web_rating_topic(centre), json.dumps(data).encode()), eid


def officer_of(days_ago: int, counter: str, i: int) -> str:
    return f"cb-d{days_ago}-{counter}-{i + 1}"


def serve_week(j: Judged, centre: str, first_day: int,
               then: dict[tuple[int, str, str], Msg] | None = None) -> dict[tuple[int, str, str], str]:
    """Every day from ``first_day`` days ago to today, PER_DAY tickets at q1 and q2 from 08:00 local, 3 min apart;
    the officer of each close is named after its day, counter and number (so a wrong binding shows), and
    ``then[(days_ago, counter, number)]`` is published right after that close. Returns who served what."""
    served: dict[tuple[int, str, str], str] = {}
    msgs = []
    now = dt.datetime.now(HCM)
    for days_ago in range(first_day, -1, -1):
        for i in range(PER_DAY):
            for counter in ("q1", "q2"):
                at = local_ms(days_ago, 8, 3 * i, 7 if counter == "q2" else 0)
                if days_ago == 0 and at > now.timestamp() * 1000 - 60_000:
                    at = int(now.timestamp() * 1000) - 60_000 - i * 1000  # today: everything before now
                number = f"{'A' if counter == 'q1' else 'B'}-{i + 1:03d}"
                officer = officer_of(days_ago, counter, i)
                served[(days_ago, counter, number)] = officer
                msgs.append(j.close(centre, counter, number, at, officer=officer))
                if (days_ago, counter, number) in (then or {}):
                    msgs.append((then or {})[(days_ago, counter, number)])
    j.send(msgs)
    total = len(served)
    wait_until(lambda: (j.db.scalar('SELECT count("ticket") FROM "ticket"') or 0) >= total, timeout=60,
               what=f"{total} ticket points")
    return served


def restart(j: Judged, mosquitto: Any, fleet: Any, **integrity: Any) -> None:
    j.services[0].stop()
    j.services[0] = start_ingest(mqtt_settings(mosquitto), j.db, j.uid + "b", fleet=fleet,
                                 integrity=SMALL_INDEX | integrity)


def detail(j: Judged, eid: str) -> str:
    rows = j.db.rows(f'SELECT "detail" FROM "rejected" WHERE "payload" =~ /{eid}/')
    return str(rows[0]["detail"]) if rows else ""


def test_web_rating_six_days_later_after_a_restart_at_a_busy_counter(mosquitto: Any, influx_server: Any,
                                                                     tmp_path: Any) -> None:
    uid = new_uid()
    centre = f"late-{uid}"
    fleet = load_registry(write_fleet(tmp_path / "f", centre, [(f"t-{uid}", "q1"), (f"u-{uid}", "q2")],
                                      has_qms=True))
    with judging(mosquitto, influx_server, "weblate", uid, fleet, integrity=SMALL_INDEX) as j:
        served = serve_week(j, centre, 6)
        # restarted, reloading 8 days of history: still, 120 tickets per counter came since, 16 are remembered
        restart(j, mosquitto, fleet, index_lookback_s=8 * 86_400)
        assert len(j.services[0].handler.index) <= 16 * 2
        now = time.time_ns() // 1_000_000
        day6 = day_of(local_ms(6, 12))
        first, first_eid = web(j, centre, "A-005", day6, rated=now)
        again, again_eid = web(j, centre, "A-005", day6, rated=now)  # the SMS link too, one rating per ticket
        ghost, ghost_eid = web(j, centre, "A-099", day6, rated=now)  # never served that day
        j.send([first])
        assert j.outcomes([first_eid], timeout=60) == {first_eid: "rating"}
        j.send([again, ghost])
        assert j.outcomes([again_eid, ghost_eid], timeout=60) == {again_eid: "duplicate_ticket",
                                                                  ghost_eid: "unknown_ticket"}
        row = j.ratings(f"WHERE \"event_id\" = '{first_eid}'")[0]
        # A-005 was served on all seven days: the link's day decides, and that day's QMS close names the officer
        assert (row["officer"], row["counter"]) == (served[(6, "q1", "A-005")], "q1")
        close = j.db.rows(f'SELECT "ticket" FROM "ticket" WHERE "officer" = \'{row["officer"]}\'', epoch="ms")[0]
        assert int(row["closed_at_ms"]) == int(close["time"])
        assert "nor in InfluxDB" in detail(j, ghost_eid)
        assert j.services[0].lookup is not None and j.services[0].lookup.queries >= 2


def test_counter_rating_then_web_five_days_later_after_a_restart(mosquitto: Any, influx_server: Any,
                                                                 tmp_path: Any) -> None:
    uid = new_uid()
    centre = f"dup-{uid}"
    device = f"t-{uid}"
    fleet = load_registry(write_fleet(tmp_path / "f", centre, [(device, "q1"), (f"u-{uid}", "q2")], has_qms=True))
    with judging(mosquitto, influx_server, "webdup", uid, fleet, integrity=SMALL_INDEX) as j:
        # day -5, 08:09: A-004 closed at q1; the citizen taps the counter terminal 3 s later
        closed = local_ms(5, 8, 9)
        tap, tap_eid = j.rating(centre, device, "q1", "A-004", rated=closed + 3000, closed=closed,
                                officer=officer_of(5, "q1", 3))
        served = serve_week(j, centre, 5, then={(5, "q1", "A-004"): tap})
        assert j.outcomes([tap_eid], timeout=60) == {tap_eid: "rating"}
        restart(j, mosquitto, fleet)  # the default 24 h lookback: day -5 is not reloaded
        now = time.time_ns() // 1_000_000
        phone, phone_eid = web(j, centre, "A-004", day_of(closed), rated=now)  # the same ticket, 5 days later
        other, other_eid = web(j, centre, "A-004", day_of(local_ms(4, 12)), rated=now)  # day -4's A-004
        j.send([phone, other])
        assert j.outcomes([phone_eid, other_eid], timeout=60) == {phone_eid: "duplicate_ticket", other_eid: "rating"}
        rows = {r["event_id"]: r for r in j.ratings()}
        assert set(rows) == {tap_eid, other_eid}
        assert rows[tap_eid]["officer"] == served[(5, "q1", "A-004")]
        assert (rows[other_eid]["officer"], rows[other_eid]["counter"]) == (served[(4, "q1", "A-004")], "q1")
        assert f"already rated (event {tap_eid})" in detail(j, phone_eid)
