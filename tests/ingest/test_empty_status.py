"""An empty retained publish on a status topic (how an operator clears a retired terminal's or bridge's
retained status) is a broker operation: the ingest neither stores nor rejects it. An empty rating is
still rejected (malformed_json): only status topics carry retained messages by design."""

from __future__ import annotations

import time

import pytest

from ingest.config import IngestConfig
from ingest.handlers import MessageHandler
from ingest.registry import RegistryHolder
from ingest.stats import IngestStats


def _handler() -> MessageHandler:
    cfg = IngestConfig.model_validate({"province": "p", "workers": 1})
    return MessageHandler(cfg, IngestStats(), time.time_ns, RegistryHolder.from_path(None, "p"))


@pytest.mark.parametrize("topic", ["hl/v1/c1/d1/status", "hl/v1/c1/qms/bridge/status"])
def test_an_empty_status_is_ignored(topic: str) -> None:
    h = _handler()
    out = h.handle(topic, b"", time.time_ns())
    assert out.points == () and out.outcome == "ignored"
    assert sum(h.stats.rejected.values()) == 0


def test_an_empty_rating_is_still_rejected() -> None:
    h = _handler()
    out = h.handle("hl/v1/c1/d1/rating", b"", time.time_ns())
    assert out.outcome == "rejected:malformed_json"
    assert h.stats.rejected["malformed_json"] == 1
