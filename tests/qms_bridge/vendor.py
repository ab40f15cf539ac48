"""A vendor-like queue system writing its own database, and the events a person expects from it.

The expected events are computed here from what was written, with the maps of the
deploy/qms mapping files restated by hand, independently of the bridge's code.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

COUNTERS = {"Q1": "q01", "Q2": "q02"}
OFFICERS = {"NV01": "cb-lan", "NV02": "cb-minh"}
SERVICES = {"HT": "ho-tich", "DD": "dat-dai"}
UTC_OFFSET = dt.timedelta(hours=7)  # Asia/Ho_Chi_Minh, no DST

Expected = tuple[str, str, str, str | None, str | None, str | None, int]  # type counter officer ticket tid svc at


def local_ms(naive: dt.datetime) -> int:
    return int(((naive - UTC_OFFSET) - dt.datetime(1970, 1, 1)).total_seconds() * 1000)


def as_expected(doc: dict[str, Any]) -> Expected:
    return (doc["type"], doc["counter"], doc["officer"], doc.get("ticket"), doc.get("ticket_id"),
            doc.get("service"), doc["at"])


@dataclass
class VendorDb:
    url: str
    expected: list[Expected] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.url, pool_pre_ping=True)

    def dispose(self) -> None:
        self.engine.dispose()

    @staticmethod
    def now() -> dt.datetime:
        # the vendor's clock: local wall time, microseconds (updated_at is TIMESTAMP(6))
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + UTC_OFFSET  # naive local time on purpose

    def _exec(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(statement), params)

    def login(self, staff: str, counter: str, at: dt.datetime, changed: dt.datetime | None = None) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(sa.text(
                "INSERT INTO staff_sessions (staff_code, counter_no, login_at, updated_at) "
                "VALUES (:s, :c, :at, :u) RETURNING id"), {"s": staff, "c": counter, "at": at,
                                                           "u": changed or self.now()})
            sid = int(res.scalar_one())  # RETURNING: PostgreSQL, and MariaDB >= 10.5
        self._expect("officer_login", counter, staff, None, None, None, at)
        return sid

    def logout(self, session_id: int, staff: str, counter: str, at: dt.datetime) -> None:
        self._exec("UPDATE staff_sessions SET logout_at = :at, updated_at = :u WHERE id = :id",
                   at=at, u=self.now(), id=session_id)
        self._expect("officer_logout", counter, staff, None, None, None, at)

    def issue(self, number: str, service: str, at: dt.datetime, changed: dt.datetime | None = None) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(sa.text(
                "INSERT INTO tickets (number, service_code, status, issued_at, updated_at) "
                "VALUES (:n, :s, 'WAITING', :at, :u) RETURNING id"), {"n": number, "s": service, "at": at,
                                                                       "u": changed or self.now()})
            tid = int(res.scalar_one())
        return tid

    def serve(self, tid: int, number: str, service: str, counter: str, staff: str, called: dt.datetime,
              closed: dt.datetime, changed: dt.datetime | None = None) -> None:
        """Called and closed in one write (what a poller sees when the service is short)."""
        self._exec("UPDATE tickets SET counter_no = :c, staff_code = :st, status = 'DONE', called_at = :ca, "
                   "closed_at = :cl, updated_at = :u WHERE id = :id", c=counter, st=staff, ca=called, cl=closed,
                   u=changed or self.now(), id=tid)
        self._expect("ticket_called", counter, staff, number, str(tid), service, called)
        self._expect("ticket_closed", counter, staff, number, str(tid), service, closed)

    def _expect(self, type_: str, counter: str, staff: str, number: str | None, tid: str | None,
                service: str | None, at: dt.datetime) -> None:
        with self.lock:
            self.expected.append((type_, COUNTERS[counter], OFFICERS[staff], number, tid,
                                  SERVICES[service] if service else None, local_ms(at)))


def ms(t: dt.datetime) -> dt.datetime:
    """Millisecond precision, as DATETIME(3)/TIMESTAMP(3) store it."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
