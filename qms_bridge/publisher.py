"""Outbox -> broker, QoS 1, under the centre's QMS identity (``svc.qms.<centre>``).

The shared outbox publisher (broker/mqtt/outbox_publisher.py), plus the bridge's retained
status (a DeviceStatus with device ``qms-bridge``) on ``hl/v1/{centre}/qms/bridge/status``,
with an offline last will.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from broker.contract import QMS_BRIDGE_DEVICE, DeviceStatus, qms_bridge_status_topic
from broker.mqtt.outbox import Pending
from broker.mqtt.outbox_publisher import OutboxPublisher

from .config import BridgeConfig
from .outbox import Outbox

log = logging.getLogger("hailong.qms.publisher")


class Publisher(OutboxPublisher):
    """Drains the bridge's outbox to the broker on its own thread."""

    def __init__(self, cfg: BridgeConfig, outbox: Outbox, status: Callable[[], dict[str, Any]],
                 on_acked: Callable[[Pending], None] | None = None) -> None:
        self.cfg = cfg
        self.status = status  # extra DeviceStatus fields (state, outbox depth), from the bridge
        self.started = time.monotonic()
        settings = cfg.mqtt_user
        # the broker forces client id = username (svc.qms.<centre>); say the same so logs agree
        super().__init__(settings, settings.username or f"qms-bridge-{cfg.centre}", outbox,
                         status_topic=qms_bridge_status_topic(cfg.centre), status=self._status_json,
                         status_interval_s=cfg.status_interval_s, on_acked=on_acked, name="qms-publisher", log=log)

    def _status(self, online: bool) -> DeviceStatus:
        extra = self.status() if online else {}
        return DeviceStatus.model_validate({
            "v": 1, "device": QMS_BRIDGE_DEVICE, "centre": self.cfg.centre, "online": online,
            "outbox_depth": extra.get("outbox_depth", 0), "uptime_s": int(time.monotonic() - self.started),
            "version": _version(), "state": extra.get("state") if online else "offline",
            "at": int(time.time() * 1000) if online else None,
        })

    def _status_json(self, online: bool) -> bytes:
        return self._status(online).to_json()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("hailong")[:32]
    except Exception:  # an uninstalled checkout still runs
        return os.environ.get("HAILONG_VERSION", "dev")[:32]
