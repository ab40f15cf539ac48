"""A plain QoS 1 publisher for the simulator and tests (simulated counters, QMS adapters).

The terminal itself does not use this: it publishes through ``device.link.DeviceLink``,
which drains the durable outbox and deletes a rating only on its PUBACK. Here the
caller tracks acknowledgement with the returned paho ``MQTTMessageInfo``
(``wait_for_publish()`` / ``is_published()``).
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt

from broker.contract import RatingEvent, rating_topic
from broker.kernel.mqtt import MqttSettings, make_client

log = logging.getLogger("hailong.device")


class RatingPublisher:
    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        self.connected = threading.Event()
        self.client = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused connection: %s", rc)
            return
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        self.connected.clear()

    def start(self, timeout: float = 10.0) -> bool:
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        return self.connected.wait(timeout)

    def publish(self, event: RatingEvent) -> mqtt.MQTTMessageInfo:
        return self.client.publish(rating_topic(event.centre, event.device), event.to_json(), qos=1)

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish anything (QMS events, status, malformed payloads in tests)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
