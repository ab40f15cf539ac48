"""The ingest's own bound on what it holds: un-acked messages and their bytes.

MQTT 5 "receive maximum" asks the broker to hand us at most N un-acked messages,
but Mosquitto 2.0.11 was seen exceeding it (issue 12: 914 un-acked with 100), so
memory must not rest on the broker. Every message received takes a share of this
budget in paho's network thread and gives it back when it is acked (or abandoned:
its connection died, the broker redelivers it). When the budget is spent, the
network thread waits in the message callback: paho stops reading the socket, TCP
pushes back on the broker, which keeps everything else in our persistent session.
Nothing is dropped and nothing is acked early.

Waiting in the callback also stops paho's keepalive; if InfluxDB stays away longer
than 1.5 x keepalive the broker closes the connection, paho reconnects once the
budget frees up, and the messages of the dead connection are written but never
acked (the broker redelivers them; writes are idempotent).
"""

from __future__ import annotations

import threading

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
        self._cond = threading.Condition()

    def _spent(self, size: int) -> bool:
        # one message is always admitted, whatever its size, or a big one would wait forever
        return self.messages > 0 and (self.messages >= self.max_messages or self.bytes + size > self.max_bytes)

    def admit(self, size: int, stop: threading.Event) -> None:
        """Take ``size`` bytes and one message; wait (bounded slices) while the budget is spent."""
        with self._cond:
            if self._spent(size):
                self.pauses += 1
                while self._spent(size) and not stop.is_set():
                    self._cond.wait(WAIT_SLICE_S)
            self.messages += 1
            self.bytes += size
            self.peak_messages = max(self.peak_messages, self.messages)
            self.peak_bytes = max(self.peak_bytes, self.bytes)

    def release(self, messages: int, size: int) -> None:
        with self._cond:
            self.messages = max(0, self.messages - messages)
            self.bytes = max(0, self.bytes - size)
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._spent(0)
