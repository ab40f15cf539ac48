"""A real MQTT subscriber for device tests: collects what the broker delivers, per topic."""

from __future__ import annotations

import threading

from broker.mqtt.session import Message, MqttSession
from broker.mqtt.settings import MqttSettings
from tests.support.waiting import wait_until


class Collector:
    def __init__(self, settings: MqttSettings, client_id: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        # persistent, so nothing published while a broker restart separates us from it is missed
        self.session = MqttSession(settings, client_id, subscriptions=[(t, 1) for t in topics],
                                   session_expiry_s=3600, on_message=self._on_message)

    def _on_message(self, msg: Message) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def start(self) -> Collector:
        self.session.start()
        wait_until(self.session.subscribed.is_set, 10, what="collector subscribed")
        return self

    def stop(self) -> None:
        self.session.stop()

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]


def publish(settings: MqttSettings, client_id: str, topic: str, payload: bytes, retain: bool = False) -> None:
    session = MqttSession(settings, client_id).start()
    try:
        assert session.wait_connected(10), f"could not connect to {settings.url}"
        info = session.publish(topic, payload, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        session.stop()
