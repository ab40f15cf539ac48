"""MQTT settings for tests that restart a broker: reconnect in fractions of a second, still jittered."""

from __future__ import annotations

from broker.mqtt.settings import MqttSettings


def reconnecting(settings: MqttSettings, min_s: float = 0.1, max_s: float = 0.5,
                 spread_s: float | None = None) -> MqttSettings:
    """``settings`` with a short reconnect schedule (production defaults are sized for a fleet)."""
    return MqttSettings.model_validate(settings.model_dump() | {
        "reconnect_min_s": min_s, "reconnect_max_s": max_s,
        "reconnect_spread_s": min_s if spread_s is None else spread_s})
