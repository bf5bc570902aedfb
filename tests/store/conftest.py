"""A database of its own for every store test: an SQLite file in the test's tmp_path (the embedded
default), or a PostgreSQL database created on the machine's server (random name, dropped after)."""

from __future__ import annotations

import pathlib
import typing
import uuid

import asyncpg
import pytest

from server.store import Store, StoreSettings
from server.store.urls import resolve_url

POSTGRES = {"user": "postgres", "host": "127.0.0.1", "port": 5432}


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(database="postgres", **POSTGRES)


class Databases:
    """Creates PostgreSQL databases for one test; :meth:`drop_all` drops them (connections too)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def create(self) -> str:
        name = f"rill_test_{uuid.uuid4().hex[:12]}"
        admin = await _admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.names.append(name)
        return f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"

    async def drop_all(self) -> None:
        if not self.names:
            return
        admin = await _admin()
        try:
            for name in self.names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def databases() -> typing.AsyncIterator[Databases]:
    created = Databases()
    try:
        yield created
    finally:
        await created.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_settings(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, databases: Databases
) -> dict[str, typing.Any]:
    """Settings changes that give the demo a store of its own: the embedded default (its state
    directory in tmp_path) or a fresh PostgreSQL database."""
    state_dir = tmp_path / "state"
    if request.param == "sqlite":
        return {"database_url": "", "state_dir": state_dir}
    return {"database_url": await databases.create(), "state_dir": state_dir}


def store_of(changes: dict[str, typing.Any], settings: StoreSettings | None = None) -> Store:
    """A (not yet started) store for ``changes``."""
    return Store(resolve_url(changes["database_url"], changes["state_dir"]), settings)


@pytest.fixture
async def store(store_settings: dict[str, typing.Any]) -> typing.AsyncIterator[Store]:
    """A started store on the test's database."""
    opened = store_of(store_settings)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.aclose()
