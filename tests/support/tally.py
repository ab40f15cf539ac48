"""Counters that several tests fill, checked once at the end of the session.

A parametrised family of tests (every panel of every scenario case, every centre-week of the
report) proves something as a whole: "more than 500 cells of each board were compared", "0 %,
100 % and a tie were all met". Checking that in a test that must run last made the suite pass
only in its usual order. Instead, each feeding test calls :meth:`Tally.fed` when it passed; at
the session's end (tests/conftest.py ``pytest_sessionfinish``) a tally whose feeders ALL ran and
passed is checked, and a failed check fails the session with its message. A tally whose family
ran only in part (``-k``, one node id) is reported as not checked: a partial run proves nothing
about the whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

REGISTRY: list[Tally] = []


@dataclass
class Tally:
    """``expected`` feeding tests fill ``counts``; ``check`` raises AssertionError when the whole is short."""

    name: str
    expected: int
    check: Callable[[Counter[str]], None]
    counts: Counter[str] = field(default_factory=Counter)
    passed: int = 0

    def __post_init__(self) -> None:
        REGISTRY.append(self)

    def fed(self) -> None:
        """Called by a feeding test at its very end, once all its own assertions held."""
        self.passed += 1

    def verdict(self) -> tuple[bool | None, str]:
        """(True/False when checked, None when the family did not run whole) and a line for the summary."""
        if self.passed == 0:
            return None, ""
        if self.passed < self.expected:
            return None, f"tally {self.name!r} not checked: {self.passed} of {self.expected} feeding tests passed"
        try:
            self.check(self.counts)
        except AssertionError as exc:
            return False, f"tally {self.name!r} FAILED: {exc} (counts {dict(self.counts)})"
        return True, f"tally {self.name!r}: {dict(self.counts)}"
