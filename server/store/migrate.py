"""Bring the store's schema to the newest revision (Alembic), at every start.

Several processes may start at once on one database (``--workers``, replicas): the upgrade runs in
one transaction that first takes a lock (PostgreSQL: a transaction-scoped advisory lock; SQLite:
``BEGIN IMMEDIATE``, the file's write lock), so one process migrates and the others then find the
schema current. DDL is transactional on both, so a failed migration leaves the schema as it was.
"""

from __future__ import annotations

import logging
import pathlib

import alembic.command
import alembic.config
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
# pg_advisory_xact_lock's key: any constant that other applications on the database do not use.
_LOCK_KEY = 0x72696C6C  # "rill"


def _config(connection: sa.Connection | None = None) -> alembic.config.Config:
    config = alembic.config.Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this code."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the store ships migrations"
    return head


def _upgrade(connection: sa.Connection) -> None:
    alembic.command.upgrade(_config(connection), "head")


def _quiet_alembic() -> None:
    # Alembic announces its plugins and context at INFO on every start; the store logs what matters
    # (the revision, and what it migrated from). A level set by the user is kept.
    for name in ("alembic.runtime.migration", "alembic.runtime.plugins"):
        quieted = logging.getLogger(name)
        if quieted.level == logging.NOTSET:
            quieted.setLevel(logging.WARNING)


async def upgrade(engine: AsyncEngine) -> None:
    """Migrate the database of ``engine`` to :func:`head_revision` (see the module docs)."""
    _quiet_alembic()
    async with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE (server.store.engine)
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
        await connection.run_sync(_upgrade)


def _current(connection: sa.Connection) -> str | None:
    _quiet_alembic()
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database of ``engine`` is at (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)
