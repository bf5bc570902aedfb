"""The store: one database (PostgreSQL, or the embedded SQLite file), its schema, and its units of work.

::

    store = Store.from_settings(settings.database_url, settings.state_dir, settings.store)
    await store.start()                    # creates the state directory, migrates (Alembic)
    mediator = bootstrap.bootstrap_streaming(..., unit_of_work=store.units)
    ...
    await store.aclose()                   # writes the units still waiting, closes the connections

Handlers write through :meth:`Store.write` (staged into the item's unit: :mod:`server.store.units`)
and read through :attr:`Store.reader`. ``python -m server`` does all of this for the demo; another
application gives its store to the server as a resource (``App(bindings, resources=[store])``).
"""

from __future__ import annotations

import logging
import pathlib
import typing

import sqlalchemy as sa
from sqlalchemy.engine import URL

from mediator.unit_of_work import current_unit
from server.store.committer import GroupCommitter
from server.store.engine import create_engine, enable_wal, reader
from server.store.errors import ForeignUnit, StoreUnavailable
from server.store.migrate import current_revision, upgrade
from server.store.settings import StoreSettings
from server.store.units import Staged, StoreUnit, StoreUnits
from server.store.urls import MEMORY, masked, resolve_url

__all__ = ["Store"]

logger = logging.getLogger("server.store")


class Store:
    """A database with rill's schema, and the units of work its writes go through (module docs)."""

    def __init__(self, url: URL, settings: StoreSettings | None = None) -> None:
        settings = settings if settings is not None else StoreSettings()
        self.url = url
        self.settings = settings
        self.engine = create_engine(
            url, sqlite_busy_timeout=settings.sqlite_busy_timeout, pool_size=settings.pool_size
        )
        self.reader = reader(self.engine)
        """The engine for reads (on SQLite their transactions never take the write lock)."""
        self.committer = GroupCommitter(
            self.engine, max_delay=settings.commit_delay, max_units=settings.commit_max_units
        )
        self.units = StoreUnits(self.committer)
        """The factory of units: ``unit_of_work=store.units`` for the mediators."""
        self.revision: str | None = None
        self._started = False
        self._closed = False

    @classmethod
    def from_settings(
        cls, database_url: str, state_dir: pathlib.Path, settings: StoreSettings | None = None
    ) -> Store | None:
        """The store ``database_url`` names (the embedded file in ``state_dir`` if empty), or None
        for ``memory`` (no store)."""
        if database_url == MEMORY:
            return None
        return cls(resolve_url(database_url, state_dir.absolute()), settings)

    @property
    def name(self) -> str:
        """The database as logs show it (no password)."""
        return masked(self.url)

    @property
    def embedded(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def start(self) -> None:
        """Create the SQLite file's directory, connect and migrate; :class:`StoreUnavailable` if not."""
        if self._closed:
            raise RuntimeError("a closed store cannot be started again")
        if self._started:
            return
        try:
            if self.embedded:
                directory = pathlib.Path(self.url.database or "").parent
                directory.mkdir(parents=True, exist_ok=True)
                logger.info("store: state directory %s", directory)
                await enable_wal(self.engine)
            before = await current_revision(self.engine)
            await upgrade(self.engine)
            self.revision = await current_revision(self.engine)
        except (OSError, sa.exc.SQLAlchemyError) as error:
            await self.engine.dispose()
            raise StoreUnavailable(f"cannot open the store {self.name}: {_reason(error)}") from error
        self._started = True
        migrated = f" (migrated from {before or 'empty'})" if before != self.revision else ""
        logger.info("store: %s at schema %s%s", self.name, self.revision, migrated)

    async def aclose(self) -> None:
        """Write the units still waiting, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.committer.aclose()
        finally:
            await self.engine.dispose()

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def current_unit(self) -> StoreUnit | None:
        """The unit of work in progress if it is this store's; None if there is none.

        :class:`ForeignUnit` if another kind of unit (or another store's) is current: a write of this
        store cannot join its transaction.
        """
        unit = current_unit()
        if unit is None:
            return None
        if isinstance(unit, StoreUnit) and unit.store_committer is self.committer:
            return unit
        raise ForeignUnit(
            f"the current unit of work is a {type(unit).__qualname__} of another store, "
            f"not one of {self.name}"
        )

    async def write(self, *writes: Staged, after_commit: typing.Callable[[], None] | None = None) -> None:
        """Stage ``writes`` in the current unit (they are written when the mediator commits it), or,
        outside one, write them now in a unit of their own; ``after_commit`` runs once they are."""
        unit = self.current_unit()
        if unit is not None:
            unit.stage(*writes)
            if after_commit is not None:
                unit.after_commit(after_commit)
            return
        own = self.units.begin()
        own.stage(*writes)
        if after_commit is not None:
            own.after_commit(after_commit)
        await own.commit()


def _reason(error: BaseException) -> str:
    """What went wrong, in one line: the driver's message rather than SQLAlchemy's wrapping."""
    original = getattr(error, "orig", None)
    found = original if isinstance(original, BaseException) else error
    text = str(found).strip().splitlines()
    return f"{type(found).__name__}: {text[0] if text else ''}".rstrip(": ")
