"""Alembic's environment for the store's migrations.

The server runs them itself at start (:func:`server.store.migrate.upgrade`), handing over a
connection already in a transaction (``config.attributes["connection"]``). For writing a new revision
against a database of your own: ``alembic -c server/store/migrations/alembic.ini -x url=sqlite:///x.db
revision --autogenerate -m "..."``.
"""

from __future__ import annotations

import asyncio
import pathlib

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from server.store.schema import metadata
from server.store.urls import resolve_url


def _run(connection: sa.Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, which Alembic does in batch mode.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    engine = create_async_engine(resolve_url(url, state_dir=pathlib.Path("state")))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_on_url(context.get_x_argument(as_dictionary=True).get("url", "")))
