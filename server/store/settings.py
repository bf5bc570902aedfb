"""The store's tuning settings (``[store]`` in TOML, ``RILL_STORE__…``); ``database_url`` and
``state_dir`` are top-level settings (:class:`server.settings.Settings`)."""

from __future__ import annotations

import pydantic

__all__ = ["StoreSettings"]


class StoreSettings(pydantic.BaseModel):
    """How units of work are committed, and how long SQLite waits for another process's write."""

    model_config = pydantic.ConfigDict(extra="forbid")

    commit_delay: float = pydantic.Field(
        0.0,
        ge=0,
        le=1,
        description="seconds a group commit waits, after its first unit, for other streams' units "
        "(0, the default: only those already waiting, i.e. those that came while the previous "
        "transaction ran; a wait costs a lone stream that much per item and bought nothing in "
        "bench group_commit)",
    )
    commit_max_units: int = pydantic.Field(
        1000, ge=1, le=100_000, description="units written in one transaction at most"
    )
    sqlite_busy_timeout: float = pydantic.Field(
        30.0, gt=0, description="seconds an SQLite write waits for another process's write lock"
    )
    pool_size: int = pydantic.Field(10, ge=1, le=1000, description="database connections kept open")
