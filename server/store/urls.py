"""``database_url``: which database the store uses, and how it is written in logs.

================================================  ==============================================
``database_url``                                  the store
================================================  ==============================================
empty (default)                                   an embedded SQLite file, ``<state_dir>/rill.db``
``postgresql://user:password@host:5432/name``     PostgreSQL through asyncpg (``postgres://``,
                                                  ``postgresql+asyncpg://`` mean the same)
``sqlite:///path/to/file.db``                     an SQLite file of your choosing (aiosqlite)
``memory``                                        no store: read models and notifications in
                                                  memory, bounded, lost on exit (tests)
================================================  ==============================================
"""

from __future__ import annotations

import pathlib
import typing

from server.store.errors import BadDatabaseUrl

if typing.TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["EMBEDDED_FILE", "MEMORY", "check_database_url", "masked", "resolve_url"]

MEMORY = "memory"
EMBEDDED_FILE = "rill.db"

_POSTGRESQL = ("postgresql", "postgres", "postgresql+asyncpg")
_SQLITE = ("sqlite", "sqlite+aiosqlite")


def _parse(spec: str) -> URL:
    # SQLAlchemy only when a URL is given: loading the settings does not load it.
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(spec)
    except (sa.exc.ArgumentError, ValueError):
        raise BadDatabaseUrl(
            f"database_url {_masked_text(spec)!r} is not a URL: expected "
            "postgresql://user:password@host/name, sqlite:///path, 'memory', "
            "or empty for the embedded default"
        ) from None
    if url.drivername in _POSTGRESQL:
        if not url.database:
            raise BadDatabaseUrl(f"database_url {masked(url)!r} names no database (…/name)")
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername in _SQLITE:
        if not url.database or url.database == ":memory:":
            raise BadDatabaseUrl(
                f"database_url {masked(url)!r}: SQLite needs a file (sqlite:///path); "
                "'memory' keeps state in memory without a database"
            )
        return url.set(drivername="sqlite+aiosqlite")
    raise BadDatabaseUrl(
        f"database_url {masked(url)!r}: unsupported database {url.drivername!r} "
        "(expected postgresql:// or sqlite:///, 'memory', or empty for the embedded default)"
    )


def check_database_url(spec: str) -> str:
    """``spec`` if it names a database rill can use (or is empty or ``memory``); else BadDatabaseUrl."""
    if spec and spec != MEMORY:
        _parse(spec)
    return spec


def resolve_url(spec: str, state_dir: pathlib.Path) -> URL:
    """The SQLAlchemy URL of ``spec`` (async drivers), the embedded file in ``state_dir`` when empty."""
    if spec == MEMORY:
        raise BadDatabaseUrl("database_url 'memory' has no database to open")
    if not spec:
        from sqlalchemy.engine import URL

        return URL.create("sqlite+aiosqlite", database=str(state_dir / EMBEDDED_FILE))
    return _parse(spec)


def masked(url: URL) -> str:
    """``url`` as logs show it: the password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def _masked_text(spec: str) -> str:
    """A URL that may not parse, without what looks like its password."""
    scheme, sep, rest = spec.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return spec
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"
