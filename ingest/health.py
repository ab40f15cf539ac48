"""Liveness: a loopback ``GET /healthz`` and systemd's sd_notify watchdog.

"Alive" means the worker loop is turning (it also turns while it waits for
InfluxDB to come back: an InfluxDB outage is not a reason to restart the
ingest, and restarting would not help). Whether the broker and InfluxDB are
reachable is reported in the body for humans and monitoring, not in the status.

systemd (see docs/ingest.md): ``Type=notify``, ``WatchdogSec=60``; the service
sends ``READY=1`` once subscribed and ``WATCHDOG=1`` from the worker loop
(broker/systemd.py), so a hung worker gets the service restarted.
"""

from __future__ import annotations

from broker.kernel.health import HealthServer

__all__ = ["HealthServer"]
