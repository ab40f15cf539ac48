"""A real MQTT subscriber for device tests: collects what the broker delivers, per topic."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt

from broker.kernel.mqtt import MqttSettings, make_client
from tests.support.waiting import wait_until


class Collector:
    def __init__(self, settings: MqttSettings, client_id: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topics = topics
        self.client = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.settings = settings

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def start(self) -> Collector:
        self.client.connect(self.settings.host, self.settings.port, keepalive=10)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 10, what="collector subscribed")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]


def publish(settings: MqttSettings, client_id: str, topic: str, payload: bytes, retain: bool = False) -> None:
    c = make_client(settings, client_id)
    c.connect(settings.host, settings.port, keepalive=10)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()
