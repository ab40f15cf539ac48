"""Polling the vendor's database (SQLAlchemy Core, read-only).

Each ``[[sql.sources]]`` table is read incrementally by a high-water mark
``(changed, id)``: the next query asks for rows strictly after it, ordered by
``(changed, id)``, so rows sharing one timestamp are never skipped and a batch may
end in the middle of them. The mark moves in the same outbox transaction as the
events read up to it. A transaction that commits late with an older ``changed``
would fall behind the mark; the poller therefore also re-reads the last
``overlap_s`` seconds before the mark and lets the outbox drop what it has seen.

The session is made read-only where the database supports it, on top of the
read-only user the centre's IT creates (docs/qms-integration.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .config import BridgeConfig, SqlSource
from .mapping import Mapped, Mapper, MappingError
from .outbox import Outbox, Queued

log = logging.getLogger("hailong.qms.sql")

Watermark = tuple[Any, Any]  # (changed value, id value)


def make_engine(cfg: BridgeConfig) -> Engine:
    url: URL = make_url(cfg.sql.url)
    password = cfg.sql.password_value()
    if password is not None:
        url = url.set(password=password)
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=0,
                              connect_args=_connect_args(url))

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        # belt and braces: the user should only have SELECT; the session refuses writes too
        statement = {
            "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "mysql": "SET SESSION TRANSACTION READ ONLY",
            "mariadb": "SET SESSION TRANSACTION READ ONLY",
        }.get(url.get_backend_name())
        if statement:
            cur = dbapi_conn.cursor()
            cur.execute(statement)
            cur.close()
            if url.get_backend_name() == "postgresql":
                dbapi_conn.commit()

    return engine


def _connect_args(url: URL) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "postgresql":
        return {"connect_timeout": 5}
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": 5, "read_timeout": 30}
    return {}


def _encode(value: Any) -> Any:
    """A watermark value -> JSON (datetimes keep their type)."""
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, int | float | str) or value is None:
        return value
    return {"text": str(value)}


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "datetime" in value:
            return dt.datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return dt.date.fromisoformat(value["date"])
        return value.get("text")
    return value


class SourceReader:
    """Reads one source table after its watermark."""

    def __init__(self, source: SqlSource, batch_size: int, overlap_s: float) -> None:
        self.source = source
        self.batch_size = batch_size
        self.overlap_s = overlap_s
        self.table = sa.table(source.table, *(sa.column(c) for c in source.selected), schema=source.schema_name)
        self.changed = self.table.c[source.changed_column]
        self.id = self.table.c[source.id_column]

    def _base(self) -> sa.Select[Any]:
        q = sa.select(*self.table.c)
        if self.source.where:
            q = q.where(sa.text(f"({self.source.where})"))
        return q.order_by(self.changed, self.id)

    def after(self, conn: sa.Connection, mark: Watermark | None) -> list[dict[str, Any]]:
        q = self._base()
        if mark is not None:
            ts, rid = mark
            q = q.where(sa.or_(self.changed > ts, sa.and_(self.changed == ts, self.id > rid)))
        return [dict(r._mapping) for r in conn.execute(q.limit(self.batch_size))]

    def overlap(self, conn: sa.Connection, mark: Watermark | None) -> list[dict[str, Any]]:
        if mark is None or not self.overlap_s or not isinstance(mark[0], dt.datetime | int | float):
            return []
        ts, rid = mark
        back = ts - dt.timedelta(seconds=self.overlap_s) if isinstance(ts, dt.datetime) else ts - self.overlap_s
        q = self._base().where(sa.and_(self.changed >= back, sa.or_(
            self.changed < ts, sa.and_(self.changed == ts, self.id <= rid))))
        return [dict(r._mapping) for r in conn.execute(q.limit(self.batch_size))]

    def newest(self, conn: sa.Connection, limit: int) -> list[dict[str, Any]]:
        """The newest rows, oldest first (for --check)."""
        q = sa.select(*self.table.c)
        if self.source.where:
            q = q.where(sa.text(f"({self.source.where})"))
        rows = [dict(r._mapping) for r in conn.execute(q.order_by(self.changed.desc(), self.id.desc()).limit(limit))]
        return rows[::-1]


class SqlPoller:
    """Polls every source on its own thread; events go to the outbox with the watermark."""

    def __init__(self, cfg: BridgeConfig, mapper: Mapper, outbox: Outbox,
                 on_queued: Callable[[list[Mapped], Queued], None],
                 on_polled: Callable[[str | None], None]) -> None:
        self.cfg = cfg
        self.mapper = mapper
        self.outbox = outbox
        self.on_queued = on_queued
        self.on_polled = on_polled
        self.engine = make_engine(cfg)
        self.readers = [SourceReader(s, cfg.sql.batch_size, cfg.sql.overlap_s) for s in cfg.sql.sources]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qms-sql", daemon=True)
        self.bad_rows = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.poll_once()
                self.on_polled(None)
            except sa.exc.SQLAlchemyError as exc:
                more = False
                log.warning("database poll failed (will retry): %s", str(exc).splitlines()[0])
                self.on_polled(str(exc).splitlines()[0])
                self.engine.dispose()  # reconnect from scratch after a database restart
            if not more:
                self._stop.wait(self.cfg.sql.poll_interval_s)

    def poll_once(self) -> bool:
        """Read each source once; True when a batch was full (more rows waiting)."""
        more = False
        with self.engine.connect() as conn:
            for reader in self.readers:
                more |= self._poll_source(conn, reader)
            conn.rollback()
        return more

    def _poll_source(self, conn: sa.Connection, reader: SourceReader) -> bool:
        source = reader.source
        stored = self.outbox.watermark(source.name)
        mark: Watermark | None = (_decode(stored[0]), _decode(stored[1])) if stored else None
        fresh = reader.after(conn, mark)
        rows = reader.overlap(conn, mark) + fresh
        if not rows:
            return False
        events: list[Mapped] = []
        for row in rows:
            try:
                events.extend(self.mapper.from_row(row, source.columns, source.events))
            except MappingError as exc:
                # a row we cannot map is logged with its id and skipped, never retried forever
                self.bad_rows += 1
                log.error("source %s row %s=%r skipped: %s", source.name, source.id_column,
                          row.get(source.id_column), exc)
        watermark = None
        if fresh:
            last = fresh[-1]
            watermark = (source.name, [_encode(last[source.changed_column]), _encode(last[source.id_column])])
        queued = self.outbox.enqueue(events, watermark=watermark)
        if queued.new:
            self.on_queued([m for m in events if m.event_id in set(queued.new)], queued)
        return len(fresh) >= reader.batch_size


def check_rows(cfg: BridgeConfig, mapper: Mapper, limit: int) -> list[tuple[str, list[Mapped] | MappingError]]:
    """--check: map the newest rows of each source; no outbox, no watermark, nothing queued."""
    engine = make_engine(cfg)
    out: list[tuple[str, list[Mapped] | MappingError]] = []
    try:
        with engine.connect() as conn:
            for src in cfg.sql.sources:
                reader = SourceReader(src, cfg.sql.batch_size, cfg.sql.overlap_s)
                for row in reader.newest(conn, limit):
                    label = f"{src.name} {src.id_column}={row.get(src.id_column)!r}"
                    try:
                        out.append((label, mapper.from_row(row, src.columns, src.events)))
                    except MappingError as exc:
                        out.append((label, exc))
            conn.rollback()
    finally:
        engine.dispose()
    return out
