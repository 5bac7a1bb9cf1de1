"""Database engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, create_engine, event, exc, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN = "letters_sqlite_begin"
# How many times a transaction runs in all when its connection turns out to be dead.
ATTEMPTS = 3

logger = logging.getLogger("letters.db")


def _prepare_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers; writing transactions take the write lock up front.

    SQLite's default deferred transactions fail at once with "database is locked" when a
    reader later tries to write while another writer holds the lock; `BEGIN IMMEDIATE`
    makes them wait (up to the busy timeout) instead, so concurrent confirmations queue.
    Reading transactions stay deferred so they never block writers. An engine made with
    `writer(engine)` starts immediate transactions.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below decide
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows (sent emails and their addresses) are overwritten, not left in the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_connect_args() -> dict[str, Any]:
    return {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}


def _ensure_sqlite_folder(settings: Settings) -> None:
    """Create the database file readable by its owner only, in a folder of its own mode.

    SQLite gives its -wal and -shm files the database file's mode, so creating the file
    0600 first keeps all three private. The folder is made 0700 when this creates it; an
    existing folder (the operator's) keeps its mode.
    """
    path = make_url(settings.database_url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def _socket_of(dbapi_connection: Any) -> Any:
    """The psycopg connection's socket (async adapter or plain), or None."""
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    pgconn = getattr(driver, "pgconn", None)
    return pgconn.socket if pgconn is not None and not driver.closed else None


# Set in a pooled connection's info (cleared when it is replaced) once it is returned.
_RETURNED = "letters.returned"


def _check_pg_connections(engine: Engine) -> None:
    """Replace a pooled PostgreSQL connection the server has closed, without a round trip.

    A connection idle in the pool has nothing to read: if its socket is readable, the
    server (idle_session_timeout, pg_terminate_backend, a restart) or a pooler in between
    (PgBouncer's idle timeouts) has sent its goodbye or closed it. The pool then opens a new
    one instead (SQLAlchemy's DisconnectionError at checkout). This replaces the pre-ping,
    which cost a transaction per session. A connection cut silently (a firewall dropping
    its state) is not seen here: `pool_recycle` bounds how old a connection gets, and
    `retrying()` runs a transaction again on a fresh connection if its connection fails.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED] = True

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # Only a connection that has sat in the pool is judged. One just opened (the
        # replacement of one judged closed included) is used as it is, as the pre-ping
        # skips fresh connections: the pool tries a replacement only once, and a second
        # refusal would end the request with "This connection is closed".
        if not record.info.get(_RETURNED):
            return
        try:
            fd = _socket_of(dbapi_connection)
            readable = fd is None or bool(select.select([fd], [], [], 0)[0])
        except (OSError, ValueError, AttributeError):
            readable = True
        if readable:
            raise exc.DisconnectionError("the server closed this idle connection")


def make_async_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        _ensure_sqlite_folder(settings)
        engine = create_async_engine(
            settings.async_database_url, connect_args=_sqlite_connect_args(), hide_parameters=True
        )
        _prepare_sqlite(engine.sync_engine)
        return engine
    engine = create_async_engine(
        settings.async_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle,
        hide_parameters=True,
    )
    _check_pg_connections(engine.sync_engine)
    return engine


def make_sync_engine(settings: Settings) -> Engine:
    """For migrations and command-line work."""
    if settings.is_sqlite:
        _ensure_sqlite_folder(settings)
        engine = create_engine(
            settings.sync_database_url, connect_args=_sqlite_connect_args(), hide_parameters=True
        )
        _prepare_sqlite(engine)
        return engine
    engine = create_engine(
        settings.sync_database_url, pool_recycle=settings.db_pool_recycle, hide_parameters=True
    )
    _check_pg_connections(engine)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


EngineT = TypeVar("EngineT", Engine, AsyncEngine)


def reader(engine: EngineT) -> EngineT:
    """The same engine and pool, for transactions that only read.

    On PostgreSQL they run at REPEATABLE READ, so all the statements of one page see the
    same moment: a letter's counters and its organization counts always add up, even while
    confirmations commit between the two reads. SQLite's WAL snapshots already do that.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


def writer(engine: EngineT) -> EngineT:
    """The same engine and pool, for transactions that write (immediate on SQLite)."""
    return engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})


def on_its_own(session: AsyncSession) -> dict[str, Any]:
    """Execution options for a session whose statements each commit by themselves: on
    PostgreSQL autocommit (no BEGIN and COMMIT round trips, and locks held for the one
    statement only); nothing on SQLite, whose one writer runs them in a transaction. Pass
    to `session.connection(execution_options=...)` before anything else in the session."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT"}
    return {}


def dialect_insert(session: AsyncSession) -> Any:
    """The INSERT of the session's database, which has ON CONFLICT (upserts) on both.

    SQLAlchemy writes ON CONFLICT per dialect (`postgresql.insert`, `sqlite.insert`); every
    upsert in the package takes its insert from here.
    """
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def table_of(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements (upserts); SQLModel does not type `__table__`."""
    found: Table = model.__table__  # type: ignore[attr-defined]
    return found


ResultT = TypeVar("ResultT")


async def retrying(
    maker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[ResultT]],
    attempts: int = ATTEMPTS,
) -> ResultT:
    """Run `work(session)` (one transaction, which commits) in a new session; if the
    database connection turns out to be dead, run it again on a fresh one.

    A connection the server or a pooler closed while it sat in the pool fails on its first
    round trip, before anything was written; the failure invalidates every connection the
    pool opened before it, so the next attempt connects anew. A failure of the COMMIT
    itself is ambiguous (it may have been written): every transaction passed here must
    be safe to run again, as the sign and confirm transactions are (a used link is not
    used twice; a second pending signature only sends a second link). When the database
    is really down every attempt fails and the last error goes up (answered 503).
    """
    for attempt in range(1, attempts + 1):
        try:
            async with maker() as session:
                return await work(session)
        except exc.DBAPIError as error:
            if not error.connection_invalidated or attempt == attempts:
                raise
            logger.warning("database connection lost; running the transaction again")
    raise AssertionError("unreachable")
