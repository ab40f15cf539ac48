"""What ``/healthz`` and the retained status say about the bridge.

Per counter: when the vendor last told us something (the event's own time) and
when the broker last acknowledged an event. A counter silent longer than
``quiet_after_s`` is listed as quiet; whether that matters depends on opening hours,
which the Fleet dashboard knows, so the bridge reports and does not judge. The
bridge as a whole is unhealthy (HTTP 503) when something is wrong, and the state says what:

- ``database_unreachable``: no connection to the vendor's database for a few poll intervals;
- ``mapping_error``: the database refuses the query the mapping makes (an unknown column or
  table, no SELECT grant, a bad ``where``), or rows are held because a code is not in a map;
  the body's ``mapping_error`` names the column or the code;
- ``database_error``: any other query failure, for a few poll intervals;
- ``broker_unreachable``: events wait and the broker cannot be reached.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from broker.contract import QmsEvent


@dataclass
class CounterHealth:
    last_event_at_ms: int | None = None  # vendor time of the newest event queued
    last_queued_ms: int | None = None  # our clock when it was queued
    last_acked_ms: int | None = None  # our clock at the broker's PUBACK
    events: int = 0


@dataclass
class BridgeHealth:
    centre: str
    quiet_after_s: float
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    counters: dict[str, CounterHealth] = field(default_factory=dict)
    sql_ok_ms: int | None = None
    sql_error: str | None = None
    sql_error_kind: str | None = None  # unreachable | mapping | database (qms_bridge.sql.classify)
    sql_error_since_ms: int | None = None
    held_rows: int = 0
    held_example: str | None = None  # the oldest held row, in words
    webhook_rejected: int = 0
    webhook_accepted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queued(self, events: list[QmsEvent]) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            for ev in events:
                c = self.counters.setdefault(ev.counter, CounterHealth())
                c.last_event_at_ms = max(c.last_event_at_ms or 0, ev.at)
                c.last_queued_ms = now
                c.events += 1

    def acked(self, counter: str) -> None:
        with self._lock:
            self.counters.setdefault(counter, CounterHealth()).last_acked_ms = int(time.time() * 1000)

    def sql_polled(self, problem: Any) -> None:
        """The poll's outcome: None, or a qms_bridge.sql.PollProblem (kind, message naming the source)."""
        now = int(time.time() * 1000)
        with self._lock:
            if problem is None:
                self.sql_ok_ms, self.sql_error, self.sql_error_kind, self.sql_error_since_ms = now, None, None, None
            else:
                if problem.kind != self.sql_error_kind:
                    self.sql_error_since_ms = None
                self.sql_error = str(problem)[:300]
                self.sql_error_kind = problem.kind
                self.sql_error_since_ms = self.sql_error_since_ms or now

    def rows_held(self, held: list[Any]) -> None:
        """The rows the SQL poller holds for a mapping gap (qms_bridge.outbox.Held), oldest first."""
        with self._lock:
            self.held_rows = len(held)
            self.held_example = (f"source {held[0].source} row {held[0].row_id}: {held[0].problem}"
                                 if held else None)

    def state(self, *, mqtt_connected: bool, outbox_depth: int, sql_enabled: bool, poll_interval_s: float) -> str:
        """One word for the retained status and /healthz (<= 32 chars)."""
        now = int(time.time() * 1000)
        with self._lock:
            kind = self.sql_error_kind if sql_enabled else None
            # a lost connection or a failing server may come back by itself: reported once it lasts
            lasting = (self.sql_error_since_ms is not None
                       and now - self.sql_error_since_ms > max(3 * poll_interval_s, 10) * 1000)
            held = self.held_rows
        if kind == "unreachable" and lasting:
            return "database_unreachable"
        if kind == "mapping" or held:
            return "mapping_error"
        if kind == "database" and lasting:
            return "database_error"
        if not mqtt_connected and outbox_depth:
            return "broker_unreachable"
        return "ok"

    def report(self, *, mqtt_connected: bool, outbox_depth: int, sql_enabled: bool,
               poll_interval_s: float) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for /healthz."""
        state = self.state(mqtt_connected=mqtt_connected, outbox_depth=outbox_depth, sql_enabled=sql_enabled,
                           poll_interval_s=poll_interval_s)
        now = int(time.time() * 1000)
        with self._lock:
            counters = {
                name: {
                    "last_event_at_ms": c.last_event_at_ms,
                    "last_queued_ms": c.last_queued_ms,
                    "last_acked_ms": c.last_acked_ms,
                    "events": c.events,
                    "quiet": c.last_queued_ms is None or now - c.last_queued_ms > self.quiet_after_s * 1000,
                }
                for name, c in sorted(self.counters.items())
            }
            body: dict[str, Any] = {
                "centre": self.centre,
                "state": state,
                "mqtt_connected": mqtt_connected,
                "outbox_depth": outbox_depth,
                "uptime_s": (now - self.started_ms) // 1000,
                "counters": counters,
                "webhook": {"accepted": self.webhook_accepted, "rejected": self.webhook_rejected},
            }
            if sql_enabled:
                body["sql"] = {"last_ok_ms": self.sql_ok_ms, "error": self.sql_error,
                               "problem": self.sql_error_kind, "held_rows": self.held_rows}
            if state == "mapping_error":
                body["mapping_error"] = (self.sql_error if self.sql_error_kind == "mapping" else
                                         f"{self.held_example} ({self.held_rows} row(s) held)")
        return (200 if state == "ok" else 503), body
