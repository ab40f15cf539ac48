"""InfluxDB replaced by a scripted in-memory writer (the storage.writer.Writer protocol's two methods),
for the in-process tests of what is built on a writer (retries, bisection, dead-lettering). The real
writers are tested against the real InfluxDB 1.6.7 (tests/ingest/test_lineproto.py and the services'
end-to-end tests)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from storage.writer import WriteError


class ScriptedInflux:
    """Answers each write from a script: the calls numbered in ``busy`` (1 = the first) fail retryably
    (503); otherwise a batch holding a line with "BAD" gets a 400 (a field type conflict), as InfluxDB
    refuses a whole batch for one bad point."""

    def __init__(self, busy: Collection[int] = ()) -> None:
        self.busy = busy
        self.stored: list[str] = []
        self.calls = 0

    def write(self, lines: Sequence[str]) -> None:
        self.calls += 1
        if self.calls in self.busy:
            raise WriteError("InfluxDB HTTP 503: engine busy", retryable=True, status=503)
        if any("BAD" in line for line in lines):
            raise WriteError("InfluxDB HTTP 400: field type conflict", retryable=False, status=400)
        self.stored.extend(lines)

    def close(self) -> None:
        pass
