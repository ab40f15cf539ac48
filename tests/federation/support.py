"""Province data for the federation tests: a fleet registry, ratings and tickets, and their hand count.

Ratings and tickets are written as the ingest writes them (the same measurement, tags and
fields, storage/schema.py); the expected counts are computed here by hand from the same
list, never read back from InfluxDB.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from broker.contract import SatisfactionClass, satisfaction_class
from storage.lineproto import Point
from storage.schema import WALKUP_FALSE, WALKUP_TRUE, Field, Measurement, Tag
from tests.dashboards.seed import write_points

TZ = "Asia/Ho_Chi_Minh"
ZONE = ZoneInfo(TZ)


def write_fleet(root: Path, centres: dict[str, str], devices: bool = False) -> Path:
    """A registry with these centres (id -> province), one counter each; with ``devices``, one terminal
    ``d-<centre>`` at that counter."""
    root.mkdir(parents=True, exist_ok=True)
    text = []
    for centre, province in centres.items():
        text += [f"[centre.{centre}]", f'name = "Trung tâm {centre}"', f'province = "{province}"',
                 "walkup_allowed = true", "", f"[centre.{centre}.counter.q01]", 'label = "Quầy 1"', ""]
    (root / "centres.toml").write_text("\n".join(text), encoding="utf-8")
    (root / "devices.toml").write_text("".join(f'[device.d-{c}]\ncentre = "{c}"\ncounter = "q01"\n\n'
                                               for c in centres) if devices else "", encoding="utf-8")
    (root / "officers.toml").write_text("", encoding="utf-8")
    return root


@dataclass
class Truth:
    """Hand counts per (centre, local day)."""

    counts: dict[tuple[str, str], dict[str, int]]

    def of(self, centre: str, day: str) -> dict[str, int]:
        return self.counts.get((centre, day), dict.fromkeys(
            ("rated", "not_satisfied", "satisfied", "very_satisfied", "walkups", "served"), 0))


def local_day(days_ago: int, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(ZONE).date() - dt.timedelta(days=days_ago)


def seed_province(url: str, database: str, province: str, centres: list[str], days: list[dt.date],
                  seed: int, per_day: tuple[int, int] = (0, 40), quiet: frozenset[tuple[str, dt.date]] = frozenset()
                  ) -> Truth:
    """Random ratings (scales 4 and 5, walk-ups among them) and tickets; ``quiet`` centre-days get none."""
    rng = random.Random(seed)
    points: list[Point] = []
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("rated", "not_satisfied", "satisfied", "very_satisfied", "walkups", "served"), 0))
    seq = 0
    for centre in centres:
        for day in days:
            if (centre, day) in quiet:
                continue
            key = (centre, day.isoformat())
            for _ in range(rng.randint(*per_day)):
                seq += 1
                # 07:00-17:59 local, never near midnight: the day is the local day by construction
                at = dt.datetime.combine(day, dt.time(rng.randint(7, 17), rng.randint(0, 59), rng.randint(0, 59)),
                                         ZONE)
                ns = int(at.timestamp()) * 1_000_000_000 + seq
                service = rng.choice(["dat-dai", "ho-tich"])
                points.append(Point(Measurement.TICKET, {Tag.PROVINCE: province, Tag.CENTRE: centre,
                                                         Tag.COUNTER: "q01", Tag.OFFICER: "o1",
                                                         Tag.SERVICE: service},
                                    {Field.TICKET: f"A{seq:04d}", Field.SERVE_S: 60}, ns))
                counts[key]["served"] += 1
                if rng.random() < 0.3:
                    continue  # served, not rated
                scale = rng.choice([4, 5])
                score = rng.randint(1, scale)
                cls = satisfaction_class(score, scale)
                walkup = rng.random() < 0.1
                points.append(Point(Measurement.RATING, {
                    Tag.PROVINCE: province, Tag.CENTRE: centre, Tag.COUNTER: "q01", Tag.OFFICER: "o1",
                    Tag.SERVICE: service, Tag.DEVICE: f"{centre}-d1", Tag.CLASS: cls.value,
                    Tag.WALKUP: WALKUP_TRUE if walkup else WALKUP_FALSE},
                    {Field.SCORE: score, Field.SCALE: scale, Field.EVENT_ID: f"e{seq}"}, ns + 500_000_000))
                if walkup:
                    counts[key]["walkups"] += 1
                else:
                    counts[key]["rated"] += 1
                    counts[key][{SatisfactionClass.NOT_SATISFIED: "not_satisfied",
                                 SatisfactionClass.SATISFIED: "satisfied",
                                 SatisfactionClass.VERY_SATISFIED: "very_satisfied"}[cls]] += 1
    write_points(url, database, points)
    return Truth(dict(counts))
