"""The hand-off from the MQTT consumer's network thread to the judge: a batch queue that costs one append.

``queue.Queue`` takes a lock and notifies a condition on every put; at thousands of ratings
a second that was a visible share of the ingest's CPU (issue 14 profile: ``Condition.notify``
and ``Queue.put``). Here the producer (the MQTT consumer's single network thread) appends to a deque, which
is atomic in CPython, and sets an Event only when the consumer may be asleep; the consumer
(the single judge thread) takes whole batches.

No lost wake-up: the consumer clears the Event and THEN re-checks the deque before it sleeps,
and the producer appends BEFORE it looks at the Event, so an item appended in between is
either seen by the re-check or sets the Event the consumer waits on.

The budget (``UnackedBudget``), the ingest's own bound on what it holds:
  The ingest's own bound on what it holds: un-acked messages and their bytes.

  MQTT 5 "receive maximum" asks the broker to hand us at most N un-acked messages,
  but Mosquitto 2.0.11 was seen exceeding it (issue 12: 914 un-acked with 100), so
  memory must not rest on the broker. Every message received takes a share of this
  budget in the consumer's network thread and gives it back when it is acked (or abandoned:
  its connection died, the broker redelivers it). When the budget is spent, the
  network thread waits in the message callback: the consumer stops reading the socket, TCP
  pushes back on the broker, which keeps everything else in our persistent session.
  Nothing is dropped and nothing is acked early.

  Waiting in the callback also stops the consumer's keepalive; if InfluxDB stays away longer
  than 1.5 x keepalive the broker closes the connection, the consumer reconnects once the
  budget frees up, and the messages of the dead connection are written but never
  acked (the broker redelivers them; writes are idempotent).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Single producer, single consumer."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._ready = threading.Event()

    def put(self, item: T) -> None:
        self._items.append(item)
        if not self._ready.is_set():
            self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def _wait(self, timeout: float) -> bool:
        """Sleep until an item may be there (True) or ``timeout`` passed with none (False)."""
        self._ready.clear()
        if self._items:
            return True
        return self._ready.wait(timeout) or bool(self._items)

    def take(self, max_items: int, first_wait_s: float, fill_wait_s: float) -> list[T]:
        """Up to ``max_items``: wait ``first_wait_s`` for the first, then at most ``fill_wait_s`` to fill up."""
        if not self._items and not self._wait(first_wait_s):
            return []
        batch: list[T] = []
        deadline = time.monotonic() + fill_wait_s
        pop = self._items.popleft
        while len(batch) < max_items:
            try:
                batch.append(pop())
            except IndexError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._wait(remaining):
                    break
        return batch

    def drain(self) -> list[T]:
        """Everything there now, without waiting."""
        out: list[T] = []
        pop = self._items.popleft
        while True:
            try:
                out.append(pop())
            except IndexError:
                return out


WAIT_SLICE_S = 0.25  # re-check ``stop`` this often while paused


class UnackedBudget:
    """Counts messages and bytes received and not yet acked; ``admit`` waits while either is spent."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0
        self.peak_messages = 0
        self.peak_bytes = 0
        self.pauses = 0  # how often reading stopped because the budget was spent
        # a plain lock, entered directly on the per-message path (``with`` on the Condition runs its Python
        # __enter__: 4.5 % of a worker in the issue-14 profile); the Condition only for waiting on it
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # admit() calls paused on the budget: release() wakes only when there are some

    def _spent(self, size: int) -> bool:
        # one message is always admitted, whatever its size, or a big one would wait forever
        return self.messages > 0 and (self.messages >= self.max_messages or self.bytes + size > self.max_bytes)

    def admit(self, size: int, stop: threading.Event) -> None:
        """Take ``size`` bytes and one message; wait (bounded slices) while the budget is spent."""
        with self._lock:
            if self._spent(size):
                self.pauses += 1
                self._waiting += 1
                try:
                    while self._spent(size) and not stop.is_set():
                        self._cond.wait(WAIT_SLICE_S)
                finally:
                    self._waiting -= 1
            self.messages += 1
            self.bytes += size
            if self.messages > self.peak_messages:
                self.peak_messages = self.messages
            if self.bytes > self.peak_bytes:
                self.peak_bytes = self.bytes

    def release(self, messages: int, size: int) -> None:
        with self._lock:
            self.messages = max(0, self.messages - messages)
            self.bytes = max(0, self.bytes - size)
            if self._waiting:
                self._cond.notify_all()

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._spent(0)
