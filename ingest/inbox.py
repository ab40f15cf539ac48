"""The hand-off from paho's network thread to the judge: a batch queue that costs one append.

``queue.Queue`` takes a lock and notifies a condition on every put; at thousands of ratings
a second that was a visible share of the ingest's CPU (issue 14 profile: ``Condition.notify``
and ``Queue.put``). Here the producer (paho's single network thread) appends to a deque, which
is atomic in CPython, and sets an Event only when the consumer may be asleep; the consumer
(the single judge thread) takes whole batches.

No lost wake-up: the consumer clears the Event and THEN re-checks the deque before it sleeps,
and the producer appends BEFORE it looks at the Event, so an item appended in between is
either seen by the re-check or sets the Event the consumer waits on.
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
