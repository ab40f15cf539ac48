"""Ratings by channel (counter vs web), the web's delay after the close, web ratings per link source and web
refusals, end to end: QMS closes, terminal ratings and web ratings (as svc.web publishes them) go through
Mosquitto and the REAL ingest, and every channel panel is shown by Grafana's own frontend code (@grafana/data)
and compared, as displayed text, with the hand count of what was published.

The hand count applies the rules by hand, independently of the ingest: one rating per ticket across channels
(the first to arrive wins; a web rating of a ticket already rated at the counter, or a second phone's rating, is
``duplicate_ticket``), a web rating after its link's expiry is ``link_expired``; the officer and counter of a
web rating are its ticket close's. The scenario, one centre with a QMS and two counters:

| ticket | counter, officer | what happens | delay after the close |
|---|---|---|---|
| A001, A002 | q1, cb-a | rated at the terminal (touch; button with reasons) | 8 s |
| A003 | q1, cb-a | rated from the slip's QR | 45 min |
| A004 | q1, cb-a | rated at the terminal, then from an SMS link: counts once | 8 s |
| A005 | q1, cb-a | served, not rated | |
| A006 | q1, cb-a | rated from the slip's QR on two phones: the second is refused | 10 h |
| B001 | q2, cb-b | rated from a Zalo link, "Không hài lòng" | 3 h |
| B002 | q2, cb-b | rated from a link that did not say its source | 26.4 h |
| B003 | q2, cb-b | rated at the terminal | 8 s |
| B004 | q2, cb-b | rated from the QR the terminal showed after its prompt timed out | 2 min |
| B005 | q2, cb-b | rated after its link expired: refused | |
| B006 | q2, cb-b | served, not rated | |
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from broker.contract import WEB_DEVICE, web_rating_topic
from broker.fleet.registry import load_registry
from dashboards.boards import all_dashboards
from dashboards.boards_integrity import WEB_REFUSAL_TEXT, WEB_SOURCES
from dashboards.channels import CHANNEL_LABELS, delay_buckets, delay_stat, delay_text
from dashboards.grafana import Dashboard
from dashboards.report import CHANNEL_ROWS, render_pdf, write_csv
from dashboards.rollup import backfill
from dashboards.scorecard import IsoWeek, weekly_scorecard
from dashboards.settings import DashboardSettings
from tests.support.ingest import write_fleet
from tests.support.judging import Judged, judging

from .grafana_backend import TimeRange
from .grafana_frontend import Shown, render_panel, show_panel
from .readable import audit, count, duration, pct, web_delay_texts

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
C = CHANNEL_LABELS
MIN, HOUR = 60_000, 3_600_000


@dataclass(frozen=True)
class Ticket:
    number: str
    counter: str
    officer: str
    closed: int  # epoch ms


@dataclass(frozen=True)
class Sent:
    """A rating as published, and what the rules say of it."""

    ticket: Ticket
    channel: str  # "counter" or "web"
    event_id: str
    rated: int
    score: int
    source: str | None = None
    expired: bool = False


@dataclass
class World:
    j: Judged
    centre: str
    tickets: list[Ticket]
    sent: list[Sent]
    start: int  # the range the panels are shown for: local midnight of the first day .. now
    end: int

    def outcomes(self) -> dict[str, str]:
        """event id -> "rating" or the refusal's reason, by hand: first wins across channels, expiry."""
        out, rated = {}, set()
        for s in self.sent:
            if s.expired:
                out[s.event_id] = "link_expired"
            elif s.ticket.number in rated:
                out[s.event_id] = "duplicate_ticket"
            else:
                out[s.event_id] = "rating"
                rated.add(s.ticket.number)
        return out

    def counted(self) -> list[Sent]:
        ok = self.outcomes()
        return [s for s in self.sent if ok[s.event_id] == "rating"]


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, HCM).date().isoformat()


def _web(j: Judged, centre: str, t: Ticket, rated: int, score: int, source: str | None,
         expires: int) -> tuple[tuple[str, bytes], str]:
    """A web rating exactly as svc.web publishes it (web/ratings.py: device and officer "web", any counter)."""
    eid = str(uuid.uuid4())
    data: dict[str, Any] = {
        "v": 1, "event_id": eid, "seq": next(j.seq), "device": WEB_DEVICE, "centre": centre, "counter": "web",
        "officer": "web", "ticket": t.number, "ticket_id": None, "scale": 4, "score": score,
        "reasons": ["thai_do"] if score == 1 else [], "input": "web", "source": source,
        "service_day": _day(t.closed), "link_expires_at": expires, "closed_at": None, "rated_at": rated,
        "sent_at": rated, "boot_id": "web-boot", "mono_ms": 1000}
    return (web_rating_topic(centre), json.dumps(data).encode()), eid


@pytest.fixture(scope="module")
def world(mosquitto: Any, influx_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    uid = uuid.uuid4().hex[:6]
    centre = f"ch-{uid}"
    fleet = write_fleet(tmp_path_factory.mktemp("fleet"), centre, [(f"t1-{uid}", "q1"), (f"t2-{uid}", "q2")],
                        has_qms=True)
    with judging(mosquitto, influx_server, "channels", uid, load_registry(fleet)) as j:
        now = time.time_ns() // 1_000_000
        web_at = now - 10_000  # the phones rate 10 s before the test reads

        def tk(number: str, counter: str, closed: int) -> Ticket:
            return Ticket(number, counter, "cb-a" if counter == "q1" else "cb-b", closed)

        a = [tk("A001", "q1", now - 5 * HOUR), tk("A002", "q1", now - 5 * HOUR + 10 * MIN),
             tk("A003", "q1", web_at - 45 * MIN), tk("A004", "q1", now - 4 * HOUR - 40 * MIN),
             tk("A005", "q1", now - 4 * HOUR - 30 * MIN), tk("A006", "q1", web_at - 10 * HOUR)]
        b = [tk("B001", "q2", web_at - 3 * HOUR), tk("B002", "q2", web_at - int(26.4 * HOUR)),
             tk("B003", "q2", now - 4 * HOUR), tk("B004", "q2", web_at - 2 * MIN),
             tk("B005", "q2", now - 3 * HOUR - 30 * MIN), tk("B006", "q2", now - 3 * HOUR - 20 * MIN)]
        tickets = a + b
        j.send([j.close(centre, t.counter, t.number, t.closed, officer=t.officer) for t in
                sorted(tickets, key=lambda t: t.closed)])
        sent: list[Sent] = []
        counter_msgs = []
        for t, score, kind in ((a[0], 4, "touch"), (a[1], 1, "button"), (a[3], 4, "touch"), (b[2], 2, "touch")):
            device = f"t1-{uid}" if t.counter == "q1" else f"t2-{uid}"
            msg, eid = j.rating(centre, device, t.counter, t.number, rated=t.closed + 8000, closed=t.closed,
                                officer=t.officer, score=score, input=kind,
                                reasons=["thoi_gian_cho", "thai_do"] if score == 1 else [])
            counter_msgs.append(msg)
            sent.append(Sent(t, "counter", eid, t.closed + 8000, score))
        j.send(counter_msgs)
        j.outcomes([s.event_id for s in sent])  # the terminals' ratings are judged before the phones'
        web_msgs = []
        for t, score, source, expired in ((a[2], 3, "qr", False), (a[3], 4, "sms", False), (a[5], 4, "qr", False),
                                          (a[5], 2, "qr", False), (b[0], 1, "zalo", False), (b[1], 4, None, False),
                                          (b[3], 4, "terminal-qr", False), (b[4], 4, "sms", True)):
            msg, eid = _web(j, centre, t, web_at, score, source, web_at - 1 if expired else web_at + 86_400_000)
            web_msgs.append(msg)
            sent.append(Sent(t, "web", eid, web_at, score, source, expired))
        for msg in web_msgs:  # one at a time: the second phone of A006 arrives after the first
            j.send([msg])
        first = min(t.closed for t in tickets)
        d = datetime.fromtimestamp(first / 1000, HCM).date()
        start = int(datetime(d.year, d.month, d.day, tzinfo=HCM).timestamp() * 1000)
        w = World(j, centre, tickets, sent, start, now)
        assert j.outcomes([s.event_id for s in sent]) == w.outcomes(), "the ingest judged as the rules say"
        w.end = time.time_ns() // 1_000_000  # a refusal is stamped when it arrived
        s = DashboardSettings.model_validate({"influx": {"url": influx_server.url, "database": j.db.database}})
        # the officer board's rollups, as the continuous queries would compute them (whole local days)
        assert backfill(j.db, s, datetime.fromtimestamp(start / 1000, HCM),
                        datetime.fromtimestamp(now / 1000, HCM) + timedelta(days=1)) > 0
        yield w


def _boards(rollups: bool = True) -> dict[str, tuple[Dashboard, dict[str, Any]]]:
    s = DashboardSettings(use_rollups=rollups)
    return {b.uid: (b, b.to_json(s.datasource_uid)) for b in all_dashboards(s)}


def _show(w: World, uid: str, key: str, sel: dict[str, list[str] | None], rollups: bool = True) -> Shown:
    board, js = _boards(rollups)[uid]
    panel = next(p for spec, p in zip(board.panels, js["panels"], strict=True) if spec.key == key)
    shown = show_panel(w.j.db, js, panel, TimeRange(w.start, w.end), w.end, {"centre": [w.centre], **sel})
    assert audit(f"{uid} {key}", panel, shown) > 0
    return shown


def _channel_cells(w: World, officers: set[str]) -> dict[str, str]:
    """One row of a channel table, by hand: counter/web counts of the chosen officers, their served tickets."""
    mine = [s for s in w.counted() if s.ticket.officer in officers]
    c = sum(s.channel == "counter" for s in mine)
    web = sum(s.channel == "web" for s in mine)
    served = sum(t.officer in officers for t in w.tickets)
    return {C["counter_rated"]: count(c), C["web_rated"]: count(web), C["rated"]: count(c + web),
            C["web_share"]: pct(web, c + web), C["served"]: count(served),
            C["counter_response"]: pct(c, served), C["web_response"]: pct(web, served),
            C["response_rate"]: pct(c + web, served)}


def test_the_hand_count_has_every_case(world: World) -> None:
    """What the panels below are compared with: a ticket rated on both channels counts once."""
    outcomes = Counter(world.outcomes().values())
    assert outcomes == {"rating": 9, "duplicate_ticket": 2, "link_expired": 1}
    counted = Counter(s.ticket.number for s in world.counted())
    assert counted["A004"] == 1 and {s.channel for s in world.sent if s.ticket.number == "A004"} == {"counter", "web"}
    stored = world.j.db.rows('SELECT "event_id", "input", "source", "officer", "counter", "device" FROM "rating"')
    assert len(stored) == 9
    by_eid = {r["event_id"]: r for r in stored}
    for s in world.counted():  # a web rating is credited to its close's officer and counter
        row = by_eid[s.event_id]
        assert (row["officer"], row["counter"]) == (s.ticket.officer, s.ticket.counter)
        assert (row["device"] == WEB_DEVICE) == (s.channel == "web") and (row["input"] == "web") == (
            s.channel == "web")


def test_centre_channels_equal_the_hand_count(world: World) -> None:
    for sel, officers in (({}, {"cb-a", "cb-b"}), ({"officer": ["cb-b"]}, {"cb-b"}),
                          ({"counter": ["q1"]}, {"cb-a"})):
        shown = _show(world, "hl-centre", "centre.channels", sel)
        assert len(shown.text) == 1, shown.text
        want = _channel_cells(world, officers)
        assert {k: shown.text[0][k] for k in want} == want, sel
    # the whole centre, written out once as a person reads it: 4 at the counter, 5 on the web, 12 served
    assert _channel_cells(world, {"cb-a", "cb-b"}) == {
        C["counter_rated"]: "4", C["web_rated"]: "5", C["rated"]: "9", C["web_share"]: "55.6%", C["served"]: "12",
        C["counter_response"]: "33.3%", C["web_response"]: "41.7%", C["response_rate"]: "75.0%"}


@pytest.mark.parametrize("rollups", [True, False], ids=["rollup", "raw"])
def test_officer_channels_equal_the_hand_count(world: World, rollups: bool) -> None:
    shown = _show(world, "hl-officer", "officer.channels", {}, rollups)
    rows = {t[C["officer"]]: t for t in shown.text}
    assert set(rows) == {"cb-a", "cb-b"}
    for officer, text in rows.items():
        want = _channel_cells(world, {officer})
        assert {k: text[k] for k in want} == want, officer
    assert rows["cb-a"][C["web_rated"]] == "2" and rows["cb-a"][C["response_rate"]] == "83.3%"  # 5 of 6, A004 once


def test_web_delay_is_shown_in_hours_and_days(world: World) -> None:
    delays = [s.rated - s.ticket.closed for s in world.counted() if s.channel == "web"]
    want = web_delay_texts(delays)
    assert want == ["3 giờ", "1,1 ngày"]  # 2 min, 45 min, 3 h, 10 h, 26.4 h: the median and the 90th percentile
    for uid, key in (("hl-centre", "centre.web_delay"), ("hl-officer", "officer.web_delay")):
        assert _show(world, uid, key, {}).stat == want
    cb_a = [s.rated - s.ticket.closed for s in world.counted() if s.channel == "web" and s.ticket.officer == "cb-a"]
    assert _show(world, "hl-officer", "officer.web_delay", {"officer": ["cb-a"]}).stat == web_delay_texts(cb_a) == [
        "5 giờ", "10 giờ"]  # 45 min and 10 h: the median is their mean
    assert _show(world, "hl-officer", "officer.web_delay", {"officer": ["nobody"]}).stat == ["Không có dữ liệu"]


def test_integrity_web_sources_and_refusals(world: World) -> None:
    shown = _show(world, "hl-integrity", "integrity.web_sources", {})
    (row,) = shown.text
    web = [s for s in world.counted() if s.channel == "web"]
    by_source = Counter(s.source or "unknown" for s in web)
    for code, label in (*WEB_SOURCES, ("unknown", "Không rõ")):
        assert row[label] == count(by_source[code]), (label, row)
    assert (row["Tổng"], row["Trung tâm"]) == (count(len(web)), world.centre)
    assert [row[label] for _, label in WEB_SOURCES] + [row["Không rõ"]] == ["2", "0", "1", "1", "1"]

    refusals = _show(world, "hl-integrity", "integrity.web_refusals", {})
    got = {(t["Trung tâm"], t["Lý do"]): t["Số lần"] for t in refusals.text}
    text = dict(WEB_REFUSAL_TEXT)
    want = Counter((world.centre, text[o]) for e, o in world.outcomes().items() if o != "rating"
                   and any(s.event_id == e and s.channel == "web" for s in world.sent))
    assert got == {k: count(n) for k, n in want.items()}
    assert got[(world.centre, "Vé đã được đánh giá (tại quầy hoặc qua web)")] == "2"  # A004's SMS, A006's 2nd phone


def test_every_delay_reads_as_a_person_says_it() -> None:
    """The stat's value mappings, run by @grafana/data on every bucket edge (and a hair either side), say
    what the hand-written rule says (readable.duration)."""
    board = Dashboard("t", "t", "t", (delay_stat("t.delay", ("centre",)),))
    js = board.to_json("ds")
    panel = {**js["panels"][0], "type": "table"}  # a table prints every value (a stat only its last)
    values: list[float] = [0.0, 12.5, 29.999]
    for lo, _, _ in delay_buckets()[1:]:
        values += [lo - 0.01, lo, lo + 0.01]
    values += [35 * 86_400.0, 400 * 86_400.0]
    frame = {"refId": "A", "fields": [{"name": "Trung vị", "type": "number", "values": values}]}
    shown = render_panel(js, panel, [frame])
    assert [t["Trung vị"] for t in shown.text] == [duration(v) for v in values]
    assert {duration(v) for v in (45 * 60.0, 3 * 3600.0, 2.1 * 86_400)} == {"45 phút", "3 giờ", "2,1 ngày"}



# --------------------------------------------------------------------------- the weekly report

NAMES = {"cb-a": "Nguyễn Văn An", "cb-b": "Trần Thị Bình"}


def _week_of(ms: int) -> IsoWeek:
    y, w, _ = datetime.fromtimestamp(ms / 1000, HCM).isocalendar()
    return IsoWeek(y, w)


def _report_pct(num: int, den: int) -> str:
    """How the report prints a ratio (a person's "89,7 %"), "—" when there is nothing to divide by."""
    return "—" if not den else pct(num, den).replace(".", ",").replace("%", " %")


def test_weekly_report_has_the_channels_of_each_officer(world: World, tmp_path: Path) -> None:
    """Per ISO week the data touch (the phones rate up to 26 h after the close, possibly across a Monday):
    counts per channel, the web's share, the response rate per channel and the web's delay, in the scorecard's
    numbers, its CSV and its PDF text."""
    weeks = {_week_of(s.rated) for s in world.counted()} | {_week_of(t.closed) for t in world.tickets}
    checked = 0
    for week in sorted(weeks, key=str):
        start = int(week.start("Asia/Ho_Chi_Minh").timestamp() * 1000)
        end = int(week.shifted(1).start("Asia/Ho_Chi_Minh").timestamp() * 1000)
        rated = [s for s in world.counted() if start <= s.rated < end]
        served = Counter(t.officer for t in world.tickets if start <= t.closed < end)
        card = weekly_scorecard(world.j.db, world.centre, week, "Asia/Ho_Chi_Minh", 1, 1, NAMES, "Trung tâm Kênh")
        want = {}
        for officer in {s.ticket.officer for s in rated} | set(served):
            c = sum(s.channel == "counter" and s.ticket.officer == officer for s in rated)
            w = sum(s.channel == "web" and s.ticket.officer == officer for s in rated)
            want[officer] = (c, w, served[officer])
        got = {o.officer: (o.counter, o.web, o.served) for o in card.officers}
        assert got == want, week
        for o in card.officers:
            c, w, n = want[o.officer]
            assert (o.web_share, o.counter_response, o.web_response) == (
                w / (c + w) if c + w else None, c / n if n else None, w / n if n else None)
        delays = [s.rated - s.ticket.closed for s in rated if s.channel == "web"]
        texts = web_delay_texts(delays) if delays else None
        assert ([delay_text(card.web_delay_median_s), delay_text(card.web_delay_p90_s)] if delays else None) == texts
        pdf, csv_path = tmp_path / f"{week}.pdf", tmp_path / f"{week}.csv"
        render_pdf(card, pdf, DashboardSettings().reasons)
        write_csv(card, csv_path)
        with csv_path.open(encoding="utf-8") as fh:
            rows = {r["officer"]: r for r in csv.DictReader(fh)}
        for officer, (c, w, n) in want.items():
            r = rows[officer]
            assert (r["rated_counter"], r["rated_web"]) == (str(c), str(w))
            assert r["web_share"] == ("" if not c + w else f"{w / (c + w):.6f}")
            assert (r["response_rate_counter"], r["response_rate_web"]) == (
                ("", "") if not n else (f"{c / n:.6f}", f"{w / n:.6f}"))
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
        summary, *pages = [p for p in text.split("\f") if p.strip()]
        channels = summary.split("Theo kênh đánh giá (by channel)")[1]
        total_c, total_w = sum(v[0] for v in want.values()), sum(v[1] for v in want.values())
        assert f": tại quầy {total_c}, qua web {total_w}" in channels
        if texts:
            assert f"trung vị (median) {texts[0]}, 90% trong vòng {texts[1]}" in " ".join(channels.split())
        for officer, (c, w, n) in want.items():
            (line,) = [x for x in channels.splitlines() if NAMES[officer] in x]
            assert re.split(r"\s{2,}", line.strip()) == [NAMES[officer], str(c), str(w), _report_pct(w, c + w),
                                                         _report_pct(c, n), _report_pct(w, n)], line
            (page,) = [p for p in pages if f"Cán bộ: {NAMES[officer]}" in p]
            rows_of = {parts[0]: parts[1] for parts in (re.split(r"\s{2,}", x.strip()) for x in page.splitlines())
                       if len(parts) == 2}
            assert {k: rows_of.get(k) for k in CHANNEL_ROWS} == dict(zip(CHANNEL_ROWS, (
                str(c), str(w), _report_pct(w, c + w), _report_pct(c, n), _report_pct(w, n)), strict=True))
            checked += 1
    assert checked >= 2


def test_every_refusal_reason_of_the_ingest_reads_in_vietnamese() -> None:
    """The web refusals panel names each reason in words: every reason code the ingest and the contract
    refuse a message with (read from their sources, so a new reason without words fails here)."""
    root = Path(__file__).resolve().parents[2]
    sources = [*(root / "ingest").glob("*.py"), root / "broker" / "contract.py"]
    codes = {m for p in sources for m in re.findall(
        r'(?:RuleRejection|ContractError|rejected)\(\s*"([a-z_]+)"', p.read_text(encoding="utf-8"))}
    assert {"link_expired", "duplicate_ticket", "malformed_json"} <= codes, codes  # the search finds them
    assert codes <= dict(WEB_REFUSAL_TEXT).keys(), codes - dict(WEB_REFUSAL_TEXT).keys()
