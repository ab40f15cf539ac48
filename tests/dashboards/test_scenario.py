"""The realistic scenario (tests/dashboards/scenario.py) against the ranking/ratio panels and the weekly report.

(1) Seeded with points shaped as the ingest writes them, on fixed weeks 2026-W45..W47.
(2) Published over MQTT (QMS closes and ratings, as the broker would have received them over
    the last three weeks) through the REAL ingest into the test's own database, then every
    stored rating, ticket, rejection and escalation, the officer/centre/week counts, every panel
    of the centre, officer, province and integrity boards, and the weekly CSV/PDF.
The expected numbers are always the scenario's own legal truth (never read back from InfluxDB).
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.contract import satisfaction_class
from broker.mqtt.session import MqttSession
from dashboards.boards import all_dashboards
from dashboards.grafana import NO_DATA
from dashboards.report import pct, write_weekly
from dashboards.rollup import backfill
from dashboards.scorecard import IsoWeek
from dashboards.settings import DashboardSettings
from hailong.cli import main
from hailong.localstack import InfluxServer, MosquittoServer
from ingest.config import ClockSettings
from ingest.service import IngestService
from storage.influxql import InfluxQL
from tests.support.ingest import TCentre, TDevice, TFleet, start_ingest
from tests.support.judging import mqtt_settings
from tests.support.mqtt import reconnecting
from tests.support.tally import Tally
from tests.support.waiting import wait_until

from . import test_scenario_panels as every_panel
from .conftest import ScenarioWorld
from .grafana_backend import TimeRange
from .grafana_frontend import show_panel
from .handcount import HandCount
from .readable import pct as shown_pct
from .scenario import (
    CENTRES,
    DAYS,
    FIRST,
    OFFICER_NAMES,
    PROVINCES,
    REFUSED,
    WALKUPS,
    ZERO_DAY,
    Published,
    Scenario,
    build_scenario,
    instance_key,
)
from .seed import TZ, ms
from .truth import shared_ranks

MIN_SAMPLE = 10


@pytest.fixture()
def world(scenario_world: ScenarioWorld) -> tuple[Scenario, DashboardSettings, InfluxQL]:
    return scenario_world.scenario, scenario_world.settings, scenario_world.db


def panel(s: DashboardSettings, key: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    for b in all_dashboards(s):
        js = b.to_json(s.datasource_uid)
        for spec, p in zip(b.panels, js["panels"], strict=True):
            if spec.key == key:
                return js, p
    raise KeyError(key)


def check_officer_panels(sc: Scenario, s: DashboardSettings, db: InfluxQL, centre: str, start: int,
                         end: int) -> int:
    """Officer ranking (n, served, shared rank) and each officer's ratio stat; returns the cells checked."""
    cells = 0
    want = sc.officer_counts(centre, start, end)
    tr = TimeRange(start, end - 1)
    board, rank_panel = panel(s, "officer.ranking")
    table = show_panel(db, board, rank_panel, tr, end, {"centre": [centre]})
    eligible = {o: v for o, v in want.items() if v[0] >= s.min_sample}
    ranks = shared_ranks({o: v[1] / v[0] for o, v in eligible.items()})
    # one line per rank; a tie names its members and shows their summed n and served
    got = {name: (int(row["Hạng"]), text["Đã đánh giá (n)"], text["Vé đã phục vụ"])
           for row, text in zip(table.rows, table.text, strict=True) for name in row["Cán bộ"]}
    lines = {name: row["Cán bộ"] for row in table.rows for name in row["Cán bộ"]}
    assert got == {o: (ranks[o], str(sum(eligible[m][0] for m in lines[o])), str(sum(eligible[m][2] for m in lines[o])))
                   for o in eligible}, (centre, start, end)
    cells += 3 * len(got)
    _, ratio_panel = panel(s, "officer.ratio")
    for officer, (rated, sat, _) in want.items():
        shown = show_panel(db, board, ratio_panel, tr, end, {"centre": [centre], "officer": [officer]}).stat
        expected = shown_pct(sat, rated) if rated else NO_DATA
        assert shown == [expected], (officer, shown, expected)
        cells += 1
    return cells


def check_zero_day(s: DashboardSettings, db: InfluxQL, first: datetime) -> int:
    centre, counter, day = ZERO_DAY
    start, end = ms(first + timedelta(days=day)), ms(first + timedelta(days=day + 1))
    board, p = panel(s, "centre.by_counter")
    table = show_panel(db, board, p, TimeRange(start, end - 1), end, {"centre": [centre]})
    row = next(t for t in table.text if t["Quầy"] == counter)
    assert row["Tỷ lệ hài lòng"] == "0.0%" and row["Hài lòng trở lên"] == "0" and int(row["Đã đánh giá (n)"]) > 0, row
    return 3


def check_weekly_csv(sc: Scenario, csv_path: Path, centre: str, start: int, end: int) -> int:
    want = sc.officer_counts(centre, start, end)
    with csv_path.open(encoding="utf-8") as fh:
        rows = {row["officer"]: row for row in csv.DictReader(fh)}
    ranks = shared_ranks({o: v[1] / v[0] for o, v in want.items() if v[0] >= MIN_SAMPLE})
    assert set(rows) == set(want)
    for o, (rated, sat, served) in want.items():
        row = rows[o]
        assert (int(row["rated"]), int(row["not_satisfied"]), int(row["served"])) == (rated, rated - sat, served)
        assert row["ratio"] == ("" if not rated else f"{sat / rated:.6f}"), (o, row)
        assert row["response_rate"] == ("" if not served else f"{rated / served:.6f}"), (o, row)
        assert (int(row["rank"]) if row["rank"] else None) == ranks.get(o)
    return 6 * len(want)


# --------------------------------------------------------------------------- (1) seeded

RANGES = {"3 weeks": (0, DAYS), "W46": (7, 14), "zero day": (ZERO_DAY[2], ZERO_DAY[2] + 1)}
WEEKS = ("2026-W45", "2026-W46", "2026-W47")


def _enough(counts: Counter[str]) -> None:
    assert counts["n"] > 100, "fewer than 100 scenario cells compared"


# checked at the session's end once every feeding test below passed (tests/support/tally.py)
SEEDED = Tally("scenario (seeded)", len(CENTRES) * len(RANGES) + 1 + len(CENTRES) * len(WEEKS), _enough)
CELLS = SEEDED.counts


@pytest.mark.parametrize("rng", sorted(RANGES))
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_officer_panels_equal_the_legal_truth(world: tuple[Scenario, DashboardSettings, InfluxQL], centre: str,
                                              rng: str) -> None:
    sc, s, db = world
    a, b = RANGES[rng]
    start, end = ms(FIRST + timedelta(days=a)), ms(FIRST + timedelta(days=b))
    CELLS["n"] += check_officer_panels(sc, s, db, centre, start, end)
    if centre == "c-pd" and rng == "3 weeks":
        want = sc.officer_counts(centre, start, end)
        ranks = shared_ranks({o: v[1] / v[0] for o, v in want.items() if v[0] >= s.min_sample})
        assert sorted(ranks.values()) == [1, 1, 3], "two c-pd officers tie at 100 %: ranks 1, 1, 3"
    SEEDED.fed()


def test_zero_percent_counter_day_shows_0(world: tuple[Scenario, DashboardSettings, InfluxQL]) -> None:
    _sc, s, db = world
    CELLS["n"] += check_zero_day(s, db, FIRST)
    SEEDED.fed()


@pytest.mark.parametrize("week", WEEKS)
@pytest.mark.parametrize("centre", sorted(CENTRES))
def test_weekly_csv_equals_the_legal_truth(world: tuple[Scenario, DashboardSettings, InfluxQL], centre: str,
                                           week: str, tmp_path: Path) -> None:
    sc, _s, db = world
    w = int(week[-2:]) - 45
    start, end = ms(FIRST + timedelta(days=7 * w)), ms(FIRST + timedelta(days=7 * w + 7))
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'min_sample = {MIN_SAMPLE}\n[influx]\nurl = "{db.url}"\ndatabase = "{db.database}"\n',
                   encoding="utf-8")
    r = CliRunner().invoke(main, ["report", "weekly", "--centre", centre, "--week", week, "--out", str(tmp_path),
                                  "--config", str(cfg), "--allow-ids"])  # the hand count compares ids
    assert r.exit_code == 0, r.output
    CELLS["n"] += check_weekly_csv(sc, Path(r.output.split()[1]), centre, start, end)
    SEEDED.fed()


# --------------------------------------------------------------------------- (2) over MQTT, the real ingest

MQTT_CELLS: Counter[str] = Counter()


def three_weeks_back() -> datetime:
    """Monday 00:00 three weeks before this week's: the scenario ends on last week's Friday (all past)."""
    today = datetime.now(TZ).date()
    monday = today - timedelta(days=today.weekday() + 21)
    return datetime(monday.year, monday.month, monday.day, tzinfo=TZ)


def scenario_fleet() -> TFleet:
    """The registry the ingest judges by: centres (QMS, province, walk-up policy, zone), counters, officers."""
    fleet = TFleet()
    for centre, officers in CENTRES.items():
        counters = ("q1", "q2", "q3")[:len(officers)]
        fleet.add(TCentre(centre, province=PROVINCES[centre], has_qms=True, walkup_allowed=WALKUPS[centre],
                          timezone=str(TZ)), *(TDevice(f"d-{centre}-{q}", centre, q) for q in counters))
        for o in officers:
            fleet.officer(o, OFFICER_NAMES[o], centre)
    return fleet


# A deployment replaying history sets the index rebuild to cover the oldest message it may still receive
# (the broker keeps an offline session's messages for weeks): the default 24 h would forget, across a
# restart, the tickets of a backlog older than a day.
REPLAY_LOOKBACK_S = 22 * 86_400


def restart_points(sc: Scenario, msgs: list[tuple[str, bytes]], first: datetime) -> list[int]:
    """Where the ingest restarts, each between a recall's close and a rating answering it (read back from
    InfluxDB: the re-close and, for the first, the rating that already took the ticket):
    in week 2 at the vendor-id centre before a re-rating that is ``duplicate_ticket``, in week 3 before one
    that is the ticket's only rating."""
    firsts = {k: c.at_ms for k, c in sc.instances().items()}
    outcomes = sc.outcomes()
    after_recall = sorted((p for p in sc.ratings if p.event.ticket and p.event.closed_at
                           and p.event.closed_at != firsts[instance_key(p.event.centre, p.event.ticket,
                                                                        p.event.closed_at, p.ticket_id)]),
                          key=lambda p: p.at_ms)

    def first_of(week: int, outcome: str, vendor: bool) -> str:
        return next(p.event.event_id for p in after_recall if p.event.rated_at > ms(first + timedelta(weeks=week))
                    and outcomes[p.event.event_id] == outcome and bool(p.ticket_id) == vendor)

    events = (first_of(1, "duplicate_ticket", True), first_of(2, "rating", False))
    return [next(i for i, (_, payload) in enumerate(msgs) if e.encode() in payload) for e in events]


def publish(pub: MqttSession, msgs: list[tuple[str, bytes]]) -> None:
    infos = [pub.publish(topic, payload, qos=1) for topic, payload in msgs]
    deadline = time.monotonic() + 30
    for info in infos:
        info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "the broker did not acknowledge every message"


def wait_acked(svc: IngestService, n: int) -> None:
    wait_until(lambda: svc.stats.acked >= n, timeout=45,
               what=f"the ingest writing and acking {n} messages ({svc.stats.summary()})")


@dataclass(frozen=True)
class Ingested:
    sc: Scenario
    db: InfluxQL
    settings: DashboardSettings
    weeks: list[tuple[str, int, int]]  # ISO week, start ms, end ms
    published: int


@pytest.fixture(scope="module")
def ingested(mosquitto: MosquittoServer, influx_server: InfluxServer) -> Iterator[Ingested]:
    uid = uuid.uuid4().hex[:6]
    first = three_weeks_back()
    sc = build_scenario(first=first)
    db = InfluxQL(influx_server.url, f"scn_mqtt_{uid}")
    db.create_database()
    mqtt = mqtt_settings(mosquitto)
    # Production rules: tests/support widens clock.max_age_s for its fixed-2025 golden payloads; here the
    # deployed default (400 days) applies, as does every integrity default (60 s window from the QMS close,
    # 1 h re-close window, 10 s hold grace) but the index rebuild's look-back (REPLAY_LOOKBACK_S). Every
    # message reaches the broker in the order it was sent, each rating 5-11 s after the close it answers,
    # sent when rated; the ingest takes each part of the history as the backlog of its persistent session
    # and is stopped after it (restarts in the middle of the history, see restart_points).
    ingest_kw = {"fleet": scenario_fleet(), "clock": {"max_age_s": ClockSettings().max_age_s},
                 # the history is replayed in seconds: escalate it as if it arrived live, so the
                 # once-per-rating rule of the escalation is checked too (default: 1 h, citizen gone)
                 "integrity": {"index_lookback_s": REPLAY_LOOKBACK_S, "escalate_within_s": 366 * 86_400}}
    msgs = sc.messages()
    splits = [0, *restart_points(sc, msgs, first), len(msgs)]
    svc = start_ingest(mqtt, db, uid, **ingest_kw)
    pub = MqttSession(reconnecting(mqtt, 0.2, 2), f"scn-pub-{uid}").start()
    try:
        assert pub.wait_connected(10), "publisher could not connect"
        for i, (a, b) in enumerate(itertools.pairwise(splits)):
            if i:  # the ingest is down: the broker keeps these in the ingest's persistent session
                svc.stop()
                publish(pub, msgs[a:b])
                svc = start_ingest(mqtt, db, uid, **ingest_kw)  # same client id: resumes it, rebuilds its index
            else:
                publish(pub, msgs[a:b])
            wait_acked(svc, b - a)
            assert svc.stats.held == 0
    finally:
        pub.stop()
        svc.stop()
    s = DashboardSettings.model_validate({"influx": {"url": influx_server.url, "database": db.database},
                                         "min_sample": MIN_SAMPLE})
    backfill(db, s, first, first + timedelta(days=DAYS))  # the daily rollups, as the continuous queries do
    weeks = []
    for w in range(3):
        monday = first + timedelta(weeks=w)
        year, week, _ = monday.isocalendar()
        weeks.append((f"{year}-W{week:02d}", ms(monday), ms(monday + timedelta(weeks=1))))
    yield Ingested(sc, db, s, weeks, len(msgs))
    db.drop_database()


def _expected_row(p: Published) -> dict[str, object]:
    """The rating point the legal rules make of one accepted event."""
    e, walkup = p.event, p.event.ticket is None
    return {"time": e.rated_at, "province": PROVINCES[e.centre], "centre": e.centre, "counter": e.counter,
            "device": e.device, "officer": e.officer if walkup else p.qms_officer, "service": p.service or "",
            "walkup": str(walkup).lower(), "class": satisfaction_class(e.score, e.scale).value,
            "score": e.score, "scale": e.scale, "reasons": ",".join(e.reasons), "ticket": e.ticket,
            "ticket_id": p.ticket_id, "closed_at_ms": e.closed_at,
            "response_ms": None if walkup else e.rated_at - (e.closed_at or 0),
            "terminal_officer": None if walkup or e.officer == p.qms_officer else e.officer}


def test_published_over_mqtt_through_the_real_ingest_equals_the_truth(ingested: Ingested) -> None:
    """Each rating, ticket, rejection and escalation that landed, and the officer/centre/week hand counts."""
    sc, db = ingested.sc, ingested.db
    counted = {p.event.event_id: p for p in sc.counted()}
    rows = db.rows('SELECT * FROM "rating"', epoch="ms")
    stored = {r["event_id"]: r for r in rows}
    assert len(stored) == len(rows), "a redelivery rewrote its point: one point per rating"
    assert set(stored) == set(counted)
    for eid, p in counted.items():
        want = _expected_row(p)
        got = {k: stored[eid].get(k) for k in want} | {"service": stored[eid].get("service") or "",
                                                       "reasons": stored[eid].get("reasons") or ""}
        assert got == want, eid
        MQTT_CELLS["ratings"] += len(want)
    # the QMS officer is credited where the terminal disagreed, and those are exactly the flagged ones
    flagged = {eid for eid, r in stored.items() if r.get("terminal_officer")}
    moved = {eid for eid, p in counted.items() if p.qms_officer and p.event.officer != p.qms_officer}
    assert flagged == moved and len(moved) >= 20, (len(flagged), len(moved))
    # walk-ups are stored with the (registered) officer the terminal names, and kept out of the scores below
    walkups = [r for r in stored.values() if r["walkup"] == "true"]
    assert walkups and all(r["officer"] in OFFICER_NAMES for r in walkups)
    assert {r["centre"] for r in walkups} == {c for c, ok in WALKUPS.items() if ok}
    assert {r["scale"] for r in stored.values()} == {4, 5} and {r["province"] for r in rows} == {"hue", "qt"}

    # a ticket is served once, however often it was (re)closed: one point per instance, at its first close
    tickets = db.rows('SELECT * FROM "ticket"', epoch="ms")
    got_t = sorted((t["province"], t["centre"], t["ticket"], t.get("ticket_id") or "", t["counter"], t["officer"],
                    t["service"], t["time"]) for t in tickets)
    want_t = sorted((PROVINCES[c.centre], c.centre, c.ticket, c.ticket_id or "", c.counter, c.officer, c.service,
                     c.at_ms) for c in sc.instances().values())
    assert len(sc.closes) > len(want_t), "the scenario has recalls"
    assert any(t[3] for t in want_t), "a centre sends vendor ticket ids"
    assert got_t == want_t
    MQTT_CELLS["tickets"] += 8 * len(want_t)

    # every refused event with its rule's reason, counter and terminal, once; nothing else refused
    refused = db.rows('SELECT "reason", "centre", "counter", "device", "payload" FROM "rejected"')
    got_r = Counter((json.loads(r["payload"])["event_id"], r["reason"], r["centre"], r["counter"], r["device"])
                    for r in refused)
    want_r = Counter((r.published.event.event_id, r.reason, r.centre, r.counter, r.device) for r in sc.refused())
    assert got_r == want_r
    assert {k[1] for k in want_r} == set(REFUSED)
    MQTT_CELLS["rejections"] += 5 * len(want_r)

    # one escalation per accepted "Không hài lòng" (a redelivery escalates nothing), naming the credited officer
    esc = Counter((r["event_id"], r["officer"], r["province"]) for r in db.rows(
        'SELECT "event_id", "officer", "province" FROM "escalation"'))
    assert esc == Counter((eid, p.qms_officer or p.event.officer, PROVINCES[p.event.centre])
                          for eid, p in counted.items()
                          if satisfaction_class(p.event.score, p.event.scale).value == "not_satisfied")
    MQTT_CELLS["escalations"] += 3 * len(esc)
    # the same complaints stamped at their tap (the burst rule's clock): one each, at the rating's time
    taps = {r["event_id"]: r["time"] for r in db.rows('SELECT "event_id", "score" FROM "complaint"', epoch="ms")}
    assert set(taps) == {eid for eid, _, _ in esc}
    rated = {r["event_id"]: r["time"] for r in db.rows(
        'SELECT "event_id", "score" FROM "rating" WHERE "class" = \'not_satisfied\'', epoch="ms")}
    assert all(taps[eid] == rated[eid] for eid in taps), "stamped at the tap, like the rating"
    assert db.rows('SELECT * FROM "late_escalation"') == [], "escalate_within_s covers the replay: none late"

    # per officer, centre and ISO week: n, satisfied, not satisfied, ratio, served, response rate
    for week, start, end in ingested.weeks:
        where = f"time >= {start}ms AND time < {end}ms"
        for centre in CENTRES:
            n: Counter[tuple[str, str]] = Counter()
            for r in db.rows(f'SELECT count("score") AS n FROM "rating" WHERE {where} AND "centre" = \'{centre}\' '
                             "AND \"walkup\" = 'false' GROUP BY \"officer\", \"class\""):
                n[(r["officer"], r["class"])] = int(r["n"])
            served = {r["officer"]: int(r["n"]) for r in db.rows(
                f'SELECT count("ticket") AS n FROM "ticket" WHERE {where} AND "centre" = \'{centre}\' '
                'GROUP BY "officer"')}
            got = {}
            for o in {o for o, _ in n} | set(served):
                rated = sum(v for (oo, _), v in n.items() if oo == o)
                sat = rated - n[(o, "not_satisfied")]
                got[o] = (rated, sat, rated - sat, sat / rated if rated else None, served.get(o, 0),
                          rated / served[o] if served.get(o) else None)
            want = {o: (r, s, r - s, s / r if r else None, sv, r / sv if sv else None)
                    for o, (r, s, sv) in sc.officer_counts(centre, start, end).items()}
            assert got == want, (week, centre)
            MQTT_CELLS["officer-weeks"] += 6 * len(want)
    print(f"MQTT scenario: {ingested.published} messages published, cells checked {dict(MQTT_CELLS)}")


def test_mqtt_ingested_panels_equal_the_truth(ingested: Ingested) -> None:
    """Every panel of the centre, officer, province and integrity boards (rollup and raw), for each centre and
    the selections of test_scenario_panels.py, on the second week and on all three, plus the 0 % counter-day.

    The hand count has no device statuses (none were published) and no rejections in these weeks: the
    ingest stamps a ``rejected`` point at its arrival, today.
    """
    sc, s, db = ingested.sc, ingested.settings, ingested.db
    first = datetime.fromtimestamp(ingested.weeks[0][1] / 1000, TZ)
    hc = HandCount(sc.legal_ratings(), sc.legal_served(), [], [])
    failures: list[str] = []
    ranges = [ingested.weeks[1][1:], (ingested.weeks[0][1], ingested.weeks[-1][2])]
    # the seeded panel test counts its own cells and edge cases: keep these out of its tally
    saved = Counter(every_panel.CELLS), Counter(every_panel.SEEN)
    try:
        for uid in every_panel.BOARDS:
            for mode in every_panel.modes(uid, s):
                for start, end in ranges:
                    runs, failed = every_panel.run_board(
                        db, s.model_copy(update={"use_rollups": mode == "rollup"}), hc, uid, start, end - 1)
                    MQTT_CELLS["panel views"] += runs
                    failures += [f"{uid} {mode} {start}: {f}" for f in failed]
        MQTT_CELLS["panel cells"] += sum(every_panel.CELLS.values()) - sum(saved[0].values())
    finally:
        for counter, before in zip((every_panel.CELLS, every_panel.SEEN), saved, strict=True):
            counter.clear()
            counter.update(before)
    assert not failures, f"{len(failures)} panel views differ:\n" + "\n".join(failures[:15])
    for _, start, end in ingested.weeks:
        for centre in CENTRES:
            MQTT_CELLS["ranking cells"] += check_officer_panels(sc, s, db, centre, start, end)
    MQTT_CELLS["ranking cells"] += check_zero_day(s, db, first)
    print(f"MQTT scenario panels: {dict(MQTT_CELLS)}")


def test_mqtt_ingested_weekly_csv_and_pdf_equal_the_truth(ingested: Ingested, tmp_path: Path) -> None:
    sc, s = ingested.sc, ingested.settings
    for week, start, end in ingested.weeks:
        for centre, officers in CENTRES.items():
            names = {o: OFFICER_NAMES[o] for o in officers}
            pdf, csv_path = write_weekly(s, centre, IsoWeek.parse(week), tmp_path / week, names=names,
                                         centre_name=f"Trung tâm {centre}")
            MQTT_CELLS["weekly"] += check_weekly_csv(sc, csv_path, centre, start, end)
            summary = subprocess.run(["pdftotext", "-layout", "-f", "1", "-l", "1", str(pdf), "-"], check=True,
                                     capture_output=True, text=True).stdout
            for o, (rated, sat, served) in sc.officer_counts(centre, start, end).items():
                line = next(ln for ln in summary.splitlines() if names[o] in ln)
                cells = (f" {rated} ", pct(sat / rated if rated else None), pct(rated / served if served else None))
                assert all(c in line for c in cells), (week, centre, line, cells)
                MQTT_CELLS["weekly"] += 3
    print(f"MQTT scenario weekly: cells checked {MQTT_CELLS['weekly']}")
