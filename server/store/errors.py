"""What can go wrong with the store, as exception types::

StoreError
├── BadDatabaseUrl     database_url names no database rill can use          (server.store.urls)
├── StoreUnavailable   the database cannot be opened or migrated at start   (server.store.store)
├── StoreClosed        a unit was committed after the store was closed
├── UnitClosed         a write was staged into a unit already committed or rolled back
├── ForeignUnit        the current unit of work belongs to another store or kind of store
└── CommitFailed       a unit's transaction failed; nothing of the unit was written
    └── StoreUnreachable   ... because the database could not be reached (a ConnectionError:
                           the service answers UNAVAILABLE, and a retry later may succeed)
"""

from __future__ import annotations

__all__ = [
    "BadDatabaseUrl",
    "CommitFailed",
    "ForeignUnit",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "StoreUnreachable",
    "UnitClosed",
]


class StoreError(Exception):
    """Root of the store's errors."""


class BadDatabaseUrl(StoreError, ValueError):
    """``database_url`` is not a URL of a supported database (ValueError: settings validation)."""


class StoreUnavailable(StoreError):
    """The database could not be reached, opened or migrated; the message names it (no password)."""


class StoreClosed(StoreError):
    """The store was closed: it takes no more commits."""


class UnitClosed(StoreError):
    """The unit was committed or rolled back already: nothing more can be staged into it."""


class ForeignUnit(StoreError):
    """A write for this store was made while another store's (or another kind of) unit was current:
    it cannot join that unit's transaction, and writing it on its own would break the unit's atomicity."""


class CommitFailed(StoreError):
    """The unit's transaction failed (its cause is chained); none of the unit's writes were kept."""


class StoreUnreachable(CommitFailed, ConnectionError):
    """The unit was not written because the database could not be reached (a connection lost or
    refused, or SQLite's write lock still held by another process after the busy timeout)."""
