"""The schema is created by Alembic at start, from an empty database, once, even by several at once."""

from __future__ import annotations

import asyncio
import typing

import sqlalchemy as sa

from server.store.migrate import current_revision, head_revision
from tests.store.conftest import store_of


async def test_a_store_migrates_an_empty_database_to_the_newest_revision(
    store_settings: dict[str, typing.Any],
) -> None:
    store = store_of(store_settings)
    async with store:
        assert store.revision == head_revision()
        assert await current_revision(store.engine) == head_revision()
        async with store.reader.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {"orders", "files", "outbox", "alembic_version"} <= tables


async def test_stores_starting_at_once_on_one_database_all_find_it_migrated(
    store_settings: dict[str, typing.Any],
) -> None:
    """As --workers and replicas do: the upgrade is serialised by a lock, none fails on a half-made schema."""
    stores = [store_of(store_settings) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        assert {store.revision for store in stores} == {head_revision()}
    finally:
        for store in stores:
            await store.aclose()
    again = store_of(store_settings)
    async with again:  # a restart: nothing to migrate, same revision
        assert again.revision == head_revision()
