"""rill's state store: SQLAlchemy 2 (async) over PostgreSQL (asyncpg) or an embedded SQLite file.

- :class:`Store` (:mod:`server.store.store`): the engine, migrations at start, ``units`` for the
  mediators' ``unit_of_work=``, :meth:`Store.write` for handlers.
- Units of work and what can be staged in them: :mod:`server.store.units`; how they are committed
  together: :mod:`server.store.committer`.
- :class:`OutboxBroker` (:mod:`server.store.outbox_broker`): notifications staged as outbox rows.
- The tables: :mod:`server.store.schema`; the migrations: ``server/store/migrations``.

docs/store.md explains the choices (a unit per item, grouped commits, strict and overlapped).

The names below are loaded on first use: ``server.settings`` reads ``server.store.settings`` without
loading SQLAlchemy.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from server.store.errors import (
        BadDatabaseUrl,
        CommitFailed,
        ForeignUnit,
        StoreClosed,
        StoreError,
        StoreUnavailable,
        StoreUnreachable,
        UnitClosed,
    )
    from server.store.outbox_broker import OutboxBroker
    from server.store.settings import StoreSettings
    from server.store.store import Store
    from server.store.units import Operation, StoreUnit, StoreUnits, Write, upsert

__all__ = [
    "BadDatabaseUrl",
    "CommitFailed",
    "ForeignUnit",
    "Operation",
    "OutboxBroker",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreSettings",
    "StoreUnavailable",
    "StoreUnit",
    "StoreUnits",
    "StoreUnreachable",
    "UnitClosed",
    "Write",
    "upsert",
]

_WHERE = {
    "BadDatabaseUrl": "server.store.errors",
    "CommitFailed": "server.store.errors",
    "ForeignUnit": "server.store.errors",
    "StoreClosed": "server.store.errors",
    "StoreError": "server.store.errors",
    "StoreUnavailable": "server.store.errors",
    "StoreUnreachable": "server.store.errors",
    "UnitClosed": "server.store.errors",
    "OutboxBroker": "server.store.outbox_broker",
    "StoreSettings": "server.store.settings",
    "Store": "server.store.store",
    "Operation": "server.store.units",
    "StoreUnit": "server.store.units",
    "StoreUnits": "server.store.units",
    "Write": "server.store.units",
    "upsert": "server.store.units",
}


def __getattr__(name: str) -> typing.Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
