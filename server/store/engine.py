"""The SQLAlchemy engine of a store URL, set up for what the store promises.

SQLite (the embedded default, and ``sqlite:///`` URLs), shared by several processes (``--workers``):

- WAL journal (set by :func:`enable_wal` at start; it is a property of the file): readers never wait
  for the writer, and a commit appends to the log instead of rewriting pages.
- ``synchronous=FULL``: a commit is on disk when it returns, power loss included; the group
  committer makes that fsync one per group of units, not one per item.
- A busy timeout (``store.sqlite_busy_timeout``): a process waits for another's write lock instead
  of failing with "database is locked".
- SQLAlchemy, not the sqlite3 driver, begins transactions (SQLAlchemy's SQLite docs, "Enabling
  Non-Legacy SQLite Transactional Modes"): a write transaction is ``BEGIN IMMEDIATE``, so it takes the
  write lock at its start and waits for it under the busy timeout (a deferred one that read first
  could fail at its first write without waiting); the store's reads run on :func:`reader` connections,
  which begin a deferred, read-only transaction and so never wait for a writer.

PostgreSQL: asyncpg, a connect timeout, and a pre-ping, so that connections a restarted server
dropped are replaced instead of failing a commit.
"""

from __future__ import annotations

import typing

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["READ_ONLY", "create_engine", "enable_wal", "reader"]

READ_ONLY = "rill_read_only"
"""Execution option of :func:`reader` connections: their SQLite transaction is deferred."""

CONNECT_TIMEOUT = 10.0


def create_engine(url: URL, *, sqlite_busy_timeout: float = 30.0, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite`` or ``postgresql+asyncpg``); see the module docs."""
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, connect_args={"timeout": sqlite_busy_timeout}, pool_size=pool_size, max_overflow=pool_size
        )
        _take_over_sqlite_transactions(engine)
        return engine
    return create_async_engine(
        url,
        connect_args={"timeout": CONNECT_TIMEOUT},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def reader(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for reads: on SQLite its transactions are deferred (they never take the write lock)."""
    return engine.execution_options(**{READ_ONLY: True})


def _take_over_sqlite_transactions(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_connection: typing.Any, record: object) -> None:
        # The driver must not begin transactions itself (it would not for SELECT or DDL); "begin" does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


async def enable_wal(engine: AsyncEngine) -> None:
    """Put the SQLite file in WAL mode (persistent in the file; a no-op once it is)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as connection:
        # On the driver's connection, outside any transaction: the journal mode cannot change in one.
        raw = await connection.get_raw_connection()
        driver = typing.cast(typing.Any, raw.driver_connection)
        cursor = await driver.execute("PRAGMA journal_mode=WAL")
        try:
            row = await cursor.fetchone()
        finally:
            await cursor.close()
    mode = str(row[0]).lower() if row else "unknown"
    if mode != "wal":
        raise sa.exc.OperationalError(
            "PRAGMA journal_mode=WAL", {}, Exception(f"the journal mode stayed {mode}")
        )
