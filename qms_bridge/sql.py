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

A row the mapping cannot use (an officer code not in the map, a status not listed) is
held in the outbox, with its values, in the transaction that moves the mark past it,
and retried at start, every ``retry_held_s`` and on request: fixing the map and
restarting the bridge publishes it. It is logged at ERROR once when held and once per
retry, with the attempt count (the overlap window re-reads it silently). What a query
error means is told apart: the database cannot be reached (``database_unreachable``)
or it refuses the query the mapping makes, e.g. an unknown column (``mapping_error``,
naming it). Rows the source's ``where`` leaves out, and closes the status map says were
not served, are traced at DEBUG level.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .config import BridgeConfig, SqlSource
from .mapping import Mapped, Mapper, MappingError, NotServed
from .outbox import RETRY_REQUEST, Held, Outbox, Queued

log = logging.getLogger("hailong.qms.sql")

Watermark = tuple[Any, Any]  # (changed value, id value)
# MySQL/MariaDB error codes that mean "this query does not fit the schema or the grants"
# (unknown column/table, no SELECT grant, syntax in `where`, ambiguous column) and those of a lost server
_MYSQL_MAPPING = {1052, 1054, 1064, 1109, 1142, 1143, 1146, 1049}
_MYSQL_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055, 1045, 1040, 1053}


class PollProblem(Exception):
    """A source's query failed: ``kind`` is "unreachable", "mapping" or "database"."""

    def __init__(self, kind: str, source: str | None, message: str) -> None:
        super().__init__(f"source {source}: {message}" if source else message)
        self.kind = kind
        self.source = source
        self.message = message


def classify(exc: sa.exc.SQLAlchemyError, source: str | None, connected: bool) -> PollProblem:
    """What a driver error says is wrong, in one line that names the column/table when it is one."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or ""  # psycopg
    code = orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) else None  # pymysql
    if code is not None and len(orig.args) > 1:  # type: ignore[union-attr]
        message = str(orig.args[1])  # type: ignore[union-attr]
    else:
        message = str(orig if orig is not None else exc).strip().splitlines()[0] if str(orig or exc).strip() else \
            type(exc).__name__
    if not connected or getattr(exc, "connection_invalidated", False) or code in _MYSQL_UNREACHABLE \
            or sqlstate.startswith(("08", "57P", "28")):
        return PollProblem("unreachable", source, message)
    if sqlstate.startswith("42") or code in _MYSQL_MAPPING:
        return PollProblem("mapping", source, message)
    return PollProblem("database", source, message)


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

    def overlap(self, conn: sa.Connection, mark: Watermark | None,
                floor: Watermark | None = None) -> list[dict[str, Any]]:
        """Rows up to ``overlap_s`` before the mark, but never at or before ``floor`` (a position set
        by `hailong qms bridge mark set`: what lies before it was skipped on purpose)."""
        if mark is None or not self.overlap_s or not isinstance(mark[0], dt.datetime | int | float):
            return []
        ts, rid = mark
        back = ts - dt.timedelta(seconds=self.overlap_s) if isinstance(ts, dt.datetime) else ts - self.overlap_s
        q = self._base().where(sa.and_(self.changed >= back, sa.or_(
            self.changed < ts, sa.and_(self.changed == ts, self.id <= rid))))
        if floor is not None:
            q = q.where(sa.or_(self.changed > floor[0], sa.and_(self.changed == floor[0], self.id > floor[1])))
        return [dict(r._mapping) for r in conn.execute(q.limit(self.batch_size))]

    def filtered(self, conn: sa.Connection, after: Watermark | None, limit: int) -> list[dict[str, Any]]:
        """Rows after ``after`` that ``where`` leaves out (for the debug trace only)."""
        assert self.source.where
        q = sa.select(self.id, self.changed).where(sa.text(f"NOT COALESCE(({self.source.where}), FALSE)"))
        if after is not None:
            ts, rid = after
            q = q.where(sa.or_(self.changed > ts, sa.and_(self.changed == ts, self.id > rid)))
        return [dict(r._mapping) for r in conn.execute(q.order_by(self.changed, self.id).limit(limit))]

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
                 on_polled: Callable[[PollProblem | None], None],
                 on_held: Callable[[list[Held]], None] | None = None) -> None:
        self.cfg = cfg
        self.mapper = mapper
        self.outbox = outbox
        self.on_queued = on_queued
        self.on_polled = on_polled
        self.on_held = on_held or (lambda _held: None)
        self.engine = make_engine(cfg)
        self.readers = [SourceReader(s, cfg.sql.batch_size, cfg.sql.overlap_s) for s in cfg.sql.sources]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qms-sql", daemon=True)
        self._next_retry = 0.0  # monotonic; 0 = at the first poll (the map may have changed since the last run)
        self._traced: dict[str, Watermark] = {}  # per source: the last row the debug trace named

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            more = False
            try:
                more = self.poll_once()
                self.on_polled(None)
            except PollProblem as problem:
                level = logging.WARNING if problem.kind == "unreachable" else logging.ERROR
                log.log(level, "database poll failed (%s, will retry): %s", problem.kind, problem)
                self.on_polled(problem)
                if problem.kind == "unreachable":
                    self.engine.dispose()  # reconnect from scratch after a database restart
            except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - classify() covers the driver errors
                self.on_polled(classify(exc, None, True))
                self.engine.dispose()
            if not more:
                self._stop.wait(self.cfg.sql.poll_interval_s)

    def poll_once(self) -> bool:
        """Read each source once (and retry held rows when due); True when a batch was full."""
        more = False
        # first the held rows (at start: those of the last run, under the map as it is now), then the
        # sources: a row held by this poll waits a whole interval before its first retry
        if self.outbox.take_request(RETRY_REQUEST) or time.monotonic() >= self._next_retry:
            self._next_retry = time.monotonic() + self.cfg.sql.retry_held_s
            self.retry_held()
        try:
            conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise classify(exc, None, connected=False) from None
        with conn:
            problem: PollProblem | None = None
            for reader in self.readers:
                try:
                    more |= self._poll_source(conn, reader)
                except sa.exc.SQLAlchemyError as exc:
                    problem = classify(exc, reader.source.name, connected=True)
                    if problem.kind == "unreachable":
                        raise problem from None
                    conn.rollback()  # PostgreSQL: the failed statement aborted the transaction
            conn.rollback()
        if problem is not None:
            raise problem
        return more

    def _map(self, source: SqlSource, row: dict[str, Any], events: list[Mapped], holds: list[Held],
             released: list[tuple[str, str]], trace: bool = True) -> None:
        rid = str(row.get(source.id_column))
        try:
            out = self.mapper.from_row(row, source.columns, source.events)
        except MappingError as exc:
            holds.append(Held(source.name, rid, {k: _encode(v) for k, v in row.items()}, exc.reason, str(exc)))
            return
        released.append((source.name, rid))
        for item in out:
            if isinstance(item, NotServed):
                if trace:  # once per read of the row, not again for each overlap re-read
                    log.debug("source %s row %s=%s: %s not published: status %r is not_served", source.name,
                              source.id_column, rid, item.type, item.status)
            else:
                events.append(item)

    def _poll_source(self, conn: sa.Connection, reader: SourceReader) -> bool:
        source = reader.source
        stored = self.outbox.watermark(source.name)
        mark: Watermark | None = (_decode(stored[0]), _decode(stored[1])) if stored else None
        # [changed, id] or, after `mark set`, [changed, id, [floor changed, floor id]]: the floor stays
        floor_raw = stored[2] if stored and len(stored) > 2 else None
        floor: Watermark | None = (_decode(floor_raw[0]), _decode(floor_raw[1])) if floor_raw else None
        fresh = reader.after(conn, mark)
        again = reader.overlap(conn, mark, floor)
        if source.where and log.isEnabledFor(logging.DEBUG):
            self._trace_filtered(conn, reader, mark)
        if not fresh and not again:
            return False
        events: list[Mapped] = []
        holds: list[Held] = []
        released: list[tuple[str, str]] = []
        for row in again:
            self._map(source, row, events, holds, released, trace=False)
        for row in fresh:
            self._map(source, row, events, holds, released)
        watermark = None
        if fresh:
            last = fresh[-1]
            watermark = (source.name, [_encode(last[source.changed_column]), _encode(last[source.id_column]),
                                       *([floor_raw] if floor_raw else [])])
        # rows held now go in with the mark that passes them: a crash cannot lose them
        queued = self.outbox.enqueue(events, watermark=watermark, read_from=stored, hold=holds, release=released)
        for h in queued.newly_held:
            log.error("source %s row %s=%s held, not published: %s (retried every %g s and at start; "
                      "`hailong qms bridge held list` shows it)", h.source, source.id_column, h.row_id, h.problem,
                      self.cfg.sql.retry_held_s)
        if holds or released:  # what /healthz says about held rows follows every change of them
            self.on_held(self.outbox.held())
        if not queued.mark_moved and watermark is not None:
            log.info("source %s: the read position was changed by a command while polling; kept as set",
                     source.name)
        if queued.new:
            self.on_queued([m for m in events if m.event_id in set(queued.new)], queued)
        return len(fresh) >= reader.batch_size

    def _trace_filtered(self, conn: sa.Connection, reader: SourceReader, mark: Watermark | None) -> None:
        source = reader.source
        after = max((m for m in (mark, self._traced.get(source.name)) if m is not None), default=None,
                    key=lambda m: (m[0], m[1]))
        for row in reader.filtered(conn, after, reader.batch_size):
            log.debug("source %s row %s=%r left out by where (%s)", source.name, source.id_column,
                      row[source.id_column], source.where)
            self._traced[source.name] = (row[source.changed_column], row[source.id_column])

    def retry_held(self) -> int:
        """Map every held row again with the mapping the bridge runs now; publish what maps, log the
        rest once each with its attempt count. Returns the number of rows published."""
        held = self.outbox.held()
        if not held:
            self.on_held([])
            return 0
        sources = {s.name: s for s in self.cfg.sql.sources}
        events: list[Mapped] = []
        holds: list[Held] = []
        released: list[tuple[str, str]] = []
        for h in held:
            source = sources.get(h.source)
            if source is None:  # a source renamed or removed from qms.toml: nothing maps it any more
                holds.append(h)
                continue
            row = {k: _decode(v) for k, v in h.row.items()}
            self._map(source, row, events, holds, released)
        queued = self.outbox.enqueue(events, hold=holds, release=released, retried=True)
        for h in self.outbox.held():
            if any(x.source == h.source and x.row_id == h.row_id for x in holds):
                log.error("source %s row %s still held (attempt %d since %s): %s", h.source, h.row_id, h.attempts,
                          dt.datetime.fromtimestamp(h.first_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                          h.problem)
        if released:
            log.info("%d held row(s) mapped now and released; %d event(s) queued", len(released), len(queued.new))
        self.on_held(self.outbox.held())
        if queued.new:
            self.on_queued([m for m in events if m.event_id in set(queued.new)], queued)
        return len(released)


def check_rows(cfg: BridgeConfig, mapper: Mapper,
               limit: int) -> list[tuple[str, list[Mapped | NotServed] | MappingError]]:
    """--check: map the newest rows of each source; no outbox, no watermark, nothing queued."""
    engine = make_engine(cfg)
    out: list[tuple[str, list[Mapped | NotServed] | MappingError]] = []
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
