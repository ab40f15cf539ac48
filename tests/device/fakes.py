"""Test doubles for the pure state machine: a settable clock and an in-memory sink.

These replace only time and storage for the unit tests; the outbox and MQTT
tests use the real SQLite file and the real broker.
"""

from __future__ import annotations

from typing import Any

from device.config import DeviceConfig
from device.state import RatingDraft, StorageFull

T0_WALL = 1_763_800_000_000  # 2025-11-22, a plausible device clock


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1_000_000
        self.wall = T0_WALL

    def wall_ms(self) -> int:
        return self.wall

    def mono_ms(self) -> int:
        return self.mono

    def advance(self, ms: int) -> None:
        self.mono += ms
        self.wall += ms


class MemorySink:
    def __init__(self) -> None:
        self.drafts: list[RatingDraft] = []
        self.full = False
        self.broken = False

    def commit(self, draft: RatingDraft) -> object:
        if self.broken:
            raise OSError("disk I/O error")
        if self.full:
            raise StorageFull("outbox holds 10 of 10 ratings")
        self.drafts.append(draft)
        return draft

    def has_room(self) -> bool:
        return not self.full


def make_config(**overrides: Any) -> DeviceConfig:
    data: dict[str, Any] = {
        "device_id": "t-dev", "centre": "c-test", "counter": "q01", "centre_name": "Trung tâm Phục vụ HCC",
        "counter_label": "Quầy 1", "officer_names": {"cb01": "Nguyễn Thị Lan"},
        "mqtt": {"url": "mqtt://127.0.0.1:1883"},
    }
    data.update(overrides)
    return DeviceConfig.model_validate(data)
