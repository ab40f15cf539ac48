"""A seeded InfluxDB database shared by the dashboard, alert and report tests (read-only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from dashboards.rollup import backfill
from dashboards.settings import DashboardSettings
from hailong.localstack import InfluxServer
from storage.influxql import InfluxQL

from .grafana_frontend import ensure_installed
from .scenario import DAYS as SCENARIO_DAYS
from .scenario import FIRST as SCENARIO_FIRST
from .scenario import Scenario, build_scenario
from .seed import FIRST_MONDAY, NOW, Seed, build_seed, write_points


@pytest.fixture(scope="session", autouse=True)
def grafana_js() -> None:
    """Grafana's frontend code (@grafana/data) the panel tests run: ``npm ci`` once when it is missing or
    older than its package-lock.json (``make test`` has already done it)."""
    ensure_installed()


@dataclass(frozen=True)
class Seeded:
    db: InfluxQL
    seed: Seed
    settings: DashboardSettings


@pytest.fixture(scope="session")
def seeded(influx_server: InfluxServer) -> Iterator[Seeded]:
    """The seed written once; tests only read it, so sharing the database is safe."""
    db = InfluxQL(influx_server.url, f"dash_{uuid.uuid4().hex[:10]}")
    db.create_database()
    seed = build_seed()
    write_points(influx_server.url, db.database, seed.points)
    settings = DashboardSettings.model_validate({"influx": {"url": influx_server.url, "database": db.database},
                                                 "min_sample": 30})
    # the daily rollups the long-range dashboards read, computed as the continuous queries would
    assert backfill(db, settings, FIRST_MONDAY, NOW) > 0
    yield Seeded(db, seed, settings)
    db.drop_database()


@dataclass(frozen=True)
class ScenarioWorld:
    db: InfluxQL
    scenario: Scenario
    settings: DashboardSettings


@pytest.fixture(scope="session")
def scenario_world(influx_server: InfluxServer) -> Iterator[ScenarioWorld]:
    """The field scenario (tests/dashboards/scenario.py) seeded once as the ingest stores it, rollups backfilled."""
    sc = build_scenario()
    db = InfluxQL(influx_server.url, f"scn_{uuid.uuid4().hex[:10]}")
    db.create_database()
    write_points(influx_server.url, db.database, sc.points())
    s = DashboardSettings.model_validate({"influx": {"url": influx_server.url, "database": db.database},
                                         "min_sample": 10})
    assert backfill(db, s, SCENARIO_FIRST, SCENARIO_FIRST + timedelta(days=SCENARIO_DAYS)) > 0
    yield ScenarioWorld(db, sc, s)
    db.drop_database()
