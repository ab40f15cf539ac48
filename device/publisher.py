"""Publish contract messages at QoS 1 and learn when the broker has them (PUBACK).

This is the thin publisher the outbox drains through: ``publish`` returns the
paho ``MQTTMessageInfo``; ``on_acked`` is called with the event id once the
broker acknowledged, which is the only moment a rating may leave the outbox.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from broker.contract import RatingEvent, rating_topic
from broker.mqtt import MqttSettings, make_client

log = logging.getLogger("hailong.device")


class RatingPublisher:
    def __init__(self, settings: MqttSettings, client_id: str,
                 on_acked: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._on_acked = on_acked
        self._pending: dict[int, str] = {}
        self._early_acks: set[int] = set()
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = make_client(settings, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused connection: %s", rc)
            return
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object = None) -> None:
        self.connected.clear()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, _rc: object, _p: object = None) -> None:
        with self._lock:
            event_id = self._pending.pop(mid, None)
            if event_id is None:
                # PUBACK raced ahead of publish() recording the mid
                self._early_acks.add(mid)
        self._notify(event_id)

    def _notify(self, event_id: str | None) -> None:
        if event_id and self._on_acked is not None:
            try:
                self._on_acked(event_id)
            except Exception:
                log.exception("on_acked callback failed for %s", event_id)

    def start(self, timeout: float = 10.0) -> bool:
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        return self.connected.wait(timeout)

    def publish(self, event: RatingEvent) -> mqtt.MQTTMessageInfo:
        # Never hold our lock across client.publish(): paho calls on_publish while
        # holding its own out-message mutex, which publish() also takes (deadlock).
        info = self.client.publish(rating_topic(event.centre, event.device), event.to_json(), qos=1)
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                acked: str | None = event.event_id
            else:
                self._pending[info.mid] = event.event_id
                acked = None
        self._notify(acked)
        return info

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish anything (QMS events, status); no on_acked callback, track with the returned info."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                else:
                    self._pending[info.mid] = ""
        return info

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
