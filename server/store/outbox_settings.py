"""How the outbox relay publishes: ``Settings.outbox`` (``RILL_OUTBOX__POLL_INTERVAL=0.5``, ...).

The relay (:mod:`server.store.relay`) looks for due rows whenever a commit wakes it and at least every
``poll_interval`` seconds, publishes up to ``batch_size`` of them per round, and spaces the attempts
of a row the broker did not take by exponential backoff (``backoff`` doubling up to ``max_backoff``,
jittered) until ``max_attempts`` failed attempts make it ``dead``.
"""

from __future__ import annotations

import pydantic

__all__ = ["OutboxSettings"]


class OutboxSettings(pydantic.BaseModel):
    """The relay's pace, its retries and how long published rows are kept."""

    model_config = pydantic.ConfigDict(extra="forbid")

    poll_interval: float = pydantic.Field(
        1.0,
        gt=0,
        le=3600,
        description="seconds between looks at the outbox when no commit woke the relay (rows written "
        "by another process, retries coming due, an idle SQLite relay trying to take over)",
    )
    batch_size: int = pydantic.Field(100, ge=1, le=10_000, description="rows claimed and published per round")
    max_attempts: int = pydantic.Field(
        10, ge=1, le=1000, description="failed publish attempts after which a row is dead (replayable)"
    )
    backoff: float = pydantic.Field(
        1.0, gt=0, description="seconds before a row's second attempt; doubled ..."
    )
    max_backoff: float = pydantic.Field(300.0, gt=0, description="... up to this (each delay jittered)")
    publish_timeout: float = pydantic.Field(
        30.0, gt=0, description="seconds one publish may take before it counts as a failed attempt"
    )
    keep_published: float = pydantic.Field(
        86_400.0,
        ge=0,
        description="seconds published rows stay in the table (for `outbox list` and audits) before the "
        "relay deletes them",
    )

    @pydantic.model_validator(mode="after")
    def _backoff_within_max(self) -> OutboxSettings:
        if self.max_backoff < self.backoff:
            raise ValueError(
                f"outbox: max_backoff ({self.max_backoff}) cannot be below backoff ({self.backoff})"
            )
        return self
