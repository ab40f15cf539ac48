"""A plain QoS 1 publisher for the simulator and tests (simulated counters, QMS adapters).

The terminal itself does not use this: it publishes through ``device.link.DeviceLink``,
which drains the durable outbox and deletes a rating only on its PUBACK. Here the
caller tracks acknowledgement with the returned paho ``MQTTMessageInfo``
(``wait_for_publish()`` / ``is_published()``).
"""

from __future__ import annotations

from broker.contract import RatingEvent, rating_topic
from broker.mqtt.session import MessageInfo, MqttSession
from broker.mqtt.settings import MqttSettings


class RatingPublisher:
    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.settings = settings
        # a throw-away session: a publisher receives nothing the broker should keep for it
        self.session = MqttSession(settings, client_id)
        self.connected = self.session.connected

    def start(self, timeout: float = 10.0) -> bool:
        return self.session.start().wait_connected(timeout)

    def publish(self, event: RatingEvent) -> MessageInfo:
        return self.session.publish(rating_topic(event.centre, event.device), event.to_json())

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> MessageInfo:
        """Publish anything (QMS events, status, malformed payloads in tests)."""
        return self.session.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        self.session.stop()
