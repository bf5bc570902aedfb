"""The outbox table's queries, shared by the relay and ``python -m server outbox``.

Times are UTC and computed here, in Python, never by the database: SQLite keeps a ``DateTime`` as
text without its offset, so every value written and compared must be UTC for text order to be time
order; values read back without an offset are UTC (:func:`utc`).
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mediator.message_brokers.protocol import Message
from server.store.schema import outbox

__all__ = [
    "OutboxRow",
    "OutboxStats",
    "delete_published",
    "due_rows",
    "list_rows",
    "mark_failed",
    "mark_published",
    "message_of",
    "now",
    "replay",
    "states_of",
    "stats",
    "utc",
]

OutboxState = typing.Literal["pending", "published", "dead"]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def utc(value: datetime.datetime) -> datetime.datetime:
    """``value`` as an aware UTC time (SQLite gives back naive ones, which were written as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    """One outbox row as read back."""

    message_id: uuid.UUID
    message_name: str
    topic: str
    occurred_at: datetime.datetime
    payload: typing.Any
    created_at: datetime.datetime
    state: str
    attempts: int
    next_attempt_at: datetime.datetime
    last_error: str | None
    published_at: datetime.datetime | None

    @classmethod
    def from_mapping(cls, row: sa.RowMapping) -> OutboxRow:
        published_at = row["published_at"]
        return cls(
            message_id=row["message_id"],
            message_name=row["message_name"],
            topic=row["topic"],
            occurred_at=utc(row["occurred_at"]),
            payload=row["payload"],
            created_at=utc(row["created_at"]),
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=utc(row["next_attempt_at"]),
            last_error=row["last_error"],
            published_at=utc(published_at) if published_at is not None else None,
        )


def message_of(row: OutboxRow) -> Message:
    """The envelope ``row`` holds, as it was staged (same ``message_id``)."""
    return Message(
        message_id=row.message_id,
        message_name=row.message_name,
        topic=row.topic,
        occurred_at=row.occurred_at,
        payload=row.payload,
    )


async def due_rows(
    connection: AsyncConnection, at: datetime.datetime, limit: int, *, skip_locked: bool
) -> list[OutboxRow]:
    """Up to ``limit`` pending rows due at ``at``, oldest first; with ``skip_locked`` (PostgreSQL),
    locked for this transaction, passing over those another relay's transaction holds."""
    query = (
        sa.select(outbox)
        .where(outbox.c.state == "pending", outbox.c.next_attempt_at <= at)
        .order_by(outbox.c.created_at, outbox.c.message_id)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    result = await connection.execute(query)
    return [OutboxRow.from_mapping(row) for row in result.mappings()]


async def mark_published(
    connection: AsyncConnection, message_ids: typing.Sequence[uuid.UUID], at: datetime.datetime
) -> None:
    if not message_ids:
        return
    await connection.execute(
        sa.update(outbox)
        .where(outbox.c.message_id.in_(message_ids), outbox.c.state == "pending")
        .values(state="published", published_at=at, last_error=None)
    )


async def mark_failed(
    connection: AsyncConnection,
    message_id: uuid.UUID,
    *,
    attempts: int,
    error: str,
    retry_at: datetime.datetime | None,
) -> None:
    """Record a failed attempt: pending again at ``retry_at``, or ``dead`` when it is None."""
    values: dict[str, typing.Any] = {"attempts": attempts, "last_error": error}
    if retry_at is None:
        values["state"] = "dead"
    else:
        values["next_attempt_at"] = retry_at
    await connection.execute(
        sa.update(outbox)
        .where(outbox.c.message_id == message_id, outbox.c.state == "pending")
        .values(**values)
    )


@dataclasses.dataclass(frozen=True)
class OutboxStats:
    """What the table holds now: the relay's gauges and its next wake-up."""

    pending: int = 0
    dead: int = 0
    oldest_pending: datetime.datetime | None = None
    next_due: datetime.datetime | None = None


async def stats(connection: AsyncConnection) -> OutboxStats:
    # Pending and dead only: both are small and found through the (state, next_attempt_at) index;
    # published rows, the many, are never counted.
    query = (
        sa.select(
            outbox.c.state,
            sa.func.count(),
            sa.func.min(outbox.c.created_at),
            sa.func.min(outbox.c.next_attempt_at),
        )
        .where(outbox.c.state.in_(("pending", "dead")))
        .group_by(outbox.c.state)
    )
    found = {
        state: (count, oldest, due) for state, count, oldest, due in (await connection.execute(query)).all()
    }
    pending, oldest, due = found.get("pending", (0, None, None))
    return OutboxStats(
        pending=pending,
        dead=found.get("dead", (0, None, None))[0],
        oldest_pending=utc(oldest) if oldest is not None else None,
        next_due=utc(due) if due is not None else None,
    )


async def delete_published(connection: AsyncConnection, before: datetime.datetime, limit: int) -> int:
    """Delete up to ``limit`` rows published before ``before``; how many went."""
    old = (
        sa.select(outbox.c.message_id)
        .where(outbox.c.state == "published", outbox.c.published_at < before)
        .limit(limit)
        .scalar_subquery()
    )
    result = await connection.execute(sa.delete(outbox).where(outbox.c.message_id.in_(old)))
    return result.rowcount


async def list_rows(connection: AsyncConnection, state: OutboxState | None, limit: int) -> list[OutboxRow]:
    """Up to ``limit`` rows (of ``state``, else any), oldest first."""
    query = sa.select(outbox).order_by(outbox.c.created_at, outbox.c.message_id).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state)
    return [OutboxRow.from_mapping(row) for row in (await connection.execute(query)).mappings()]


async def states_of(
    connection: AsyncConnection, message_ids: typing.Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The state of each of ``message_ids`` that is in the table."""
    query = sa.select(outbox.c.message_id, outbox.c.state).where(outbox.c.message_id.in_(message_ids))
    return {message_id: state for message_id, state in (await connection.execute(query)).all()}


async def replay(
    connection: AsyncConnection, at: datetime.datetime, message_ids: typing.Sequence[uuid.UUID] | None
) -> int:
    """Make dead and published rows (``message_ids``; every dead row when None) pending again, with no
    attempts, due at ``at``; how many changed."""
    query = sa.update(outbox).values(
        state="pending", attempts=0, next_attempt_at=at, last_error=None, published_at=None
    )
    if message_ids is None:
        query = query.where(outbox.c.state == "dead")
    else:
        query = query.where(outbox.c.message_id.in_(message_ids), outbox.c.state.in_(("dead", "published")))
    result = await connection.execute(query)
    return result.rowcount
