"""``hailong federation publish``: every registered centre's days of a window, to the province broker.

One run: (optionally) recompute the daily rollups of the window, count every centre's days
(federation/aggregate.py), stamp them with one new revision, publish them QoS 1 on
``fed/<centre>/<day>`` and wait until the broker acknowledged every one. The province
broker's bridge carries them to the national broker (store and forward); the systemd timers
(deploy/systemd/hailong-federation-*.timer) run it hourly for the last 2 days and nightly
for 35, so anything a queue lost on the way is sent again and heals.

Revisions are the wall clock in epoch ms at the start of the run (strictly above the last
one this process used): no state to keep, and a province that lost its disk still
publishes above everything it published before -- unless its clock went back, which the
national side shows (a centre-day that stops changing; docs/national.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from broker.federation import CentreDay, local_topic
from broker.fleet.registry import load_registry
from broker.kernel.settings import ConfigError, load_model
from broker.mqtt.session import MqttSession, wait_acknowledged
from dashboards import rollup
from dashboards.settings import DashboardSettings

from .aggregate import Window, count_days
from .config import FederationConfig

log = logging.getLogger("hailong.federation")

_last_revision = 0
_revision_lock = threading.Lock()


def next_revision(now_ms: int | None = None) -> int:
    """Wall-clock epoch ms, strictly above any revision this process handed out before."""
    global _last_revision
    with _revision_lock:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        _last_revision = max(now, _last_revision + 1)
        return _last_revision


@dataclass(frozen=True)
class PublishResult:
    messages: int
    centres: int
    days: int
    revision: int
    bytes: int
    seconds: float


def province_centres(cfg: FederationConfig) -> list[str]:
    """The registry's centres of this province; none is a config error (wrong province or registry)."""
    registry = load_registry(cfg.registry)
    centres = sorted(c.id for c in registry.centres.values() if c.province == cfg.province)
    if not centres:
        others = sorted({c.province for c in registry.centres.values()})
        raise ConfigError(None, "province", f"no centre of {cfg.province!r} in the registry {cfg.registry} "
                          f"(its provinces: {', '.join(others) or 'none'})")
    return centres


def build_messages(cfg: FederationConfig, dashboards: DashboardSettings, window: Window, centres: list[str],
                   revision: int) -> list[CentreDay]:
    db = cfg.influx.query_client()
    if cfg.backfill:  # the same continuous-query definitions as the province's own rollups
        rollup.backfill(db, dashboards, window.start(), window.end() - dt.timedelta(milliseconds=1))
    counts = count_days(db, centres, window)
    return [CentreDay.build(cfg.province, centre, day.isoformat(), revision, **c.as_kwargs())
            for (centre, day), c in sorted(counts.items())]


def _dashboard_settings(cfg: FederationConfig) -> DashboardSettings:
    return load_model(DashboardSettings, cfg.dashboards, "HAILONG_DASHBOARDS")


def publish(cfg: FederationConfig, days: int, now_ms: int | None = None) -> PublishResult:
    """Count and publish the last ``days`` local days (today included); return what was sent."""
    t0 = time.monotonic()
    centres = province_centres(cfg)
    revision = next_revision(now_ms)
    dashboards = _dashboard_settings(cfg)
    now = None if now_ms is None else dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    window = Window.ending_today(days, dashboards.timezone, now)
    messages = build_messages(cfg, dashboards, window, centres, revision)
    session = MqttSession(cfg.mqtt, cfg.client_id).start()
    sent = 0
    try:
        if not session.wait_connected(min(30.0, cfg.ack_timeout_s)):
            raise ConnectionError(f"cannot connect to the province broker {cfg.mqtt.url} as {cfg.mqtt.username}")
        infos = []
        for msg in messages:
            body = msg.to_json()
            sent += len(body)
            infos.append(session.publish(local_topic(msg.centre, msg.day), body, qos=1))
        deadline = time.monotonic() + cfg.ack_timeout_s
        for info in infos:
            if not wait_acknowledged(info, deadline - time.monotonic()):
                raise TimeoutError(f"the province broker did not acknowledge every aggregate within "
                                   f"{cfg.ack_timeout_s:.0f} s")
    finally:
        session.stop()
    result = PublishResult(len(messages), len(centres), len(window.days), revision, sent, time.monotonic() - t0)
    log.info("published %d centre-days (%d centres x %d days), revision %d, %d bytes in %.1f s", result.messages,
             result.centres, result.days, revision, sent, result.seconds)
    return result
