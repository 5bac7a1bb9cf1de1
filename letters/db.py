"""Database engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_BEGIN = "letters_sqlite_begin"


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
    path = make_url(settings.database_url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_async_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        _ensure_sqlite_folder(settings)
        engine = create_async_engine(
            settings.async_database_url, connect_args=_sqlite_connect_args(), hide_parameters=True
        )
        _prepare_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(
        settings.async_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
    )


def make_sync_engine(settings: Settings) -> Engine:
    """For migrations and command-line work."""
    if settings.is_sqlite:
        _ensure_sqlite_folder(settings)
        engine = create_engine(
            settings.sync_database_url, connect_args=_sqlite_connect_args(), hide_parameters=True
        )
        _prepare_sqlite(engine)
        return engine
    return create_engine(settings.sync_database_url, pool_pre_ping=True, hide_parameters=True)


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
