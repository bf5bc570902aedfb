"""The tables of rill's state store: the demo's read models and the transactional outbox.

One ``MetaData`` for all of them; Alembic's migrations (``server/store/migrations``) create and
change them, never ``create_all`` outside tests. Times are timezone-aware (UTC) in Python on every
database (:class:`UtcDateTime`).
"""

from __future__ import annotations

import datetime
import typing

import sqlalchemy as sa

__all__ = ["OUTBOX_STATES", "UtcDateTime", "files", "metadata", "orders", "outbox"]


class UtcDateTime(sa.TypeDecorator[datetime.datetime]):
    """An aware datetime in, an aware UTC datetime out, on PostgreSQL and SQLite alike.

    PostgreSQL keeps the instant (``timestamptz``); SQLite has no time zones and gives back naive
    values, so times are written as naive UTC (one format: comparisons in SQL stay correct) and read
    back as UTC. A naive datetime is refused: which instant it means is a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: sa.Dialect) -> typing.Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store keeps aware (UTC) times")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: typing.Any, dialect: sa.Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        moment = typing.cast(datetime.datetime, value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=datetime.UTC)
        return moment.astimezone(datetime.UTC)


metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(200), nullable=False),
    sa.Column("total_amount", sa.Float, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("processed_at", UtcDateTime(), nullable=False),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("file_id", sa.String(1024), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("processed_at", UtcDateTime(), nullable=False),
)

OUTBOX_STATES = ("pending", "published", "dead")
"""``pending``: to be published (again at ``next_attempt_at``); ``published``: the broker took it;
``dead``: given up after the relay's attempts (counted, logged, replayable)."""

outbox = sa.Table(
    "outbox",
    metadata,
    # The envelope's message_id: the AMQP message_id too, so consumers deduplicate by it.
    sa.Column("message_id", sa.Uuid, primary_key=True),
    sa.Column("message_name", sa.String(255), nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("published_at", UtcDateTime(), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'published', 'dead')", name="outbox_state"),
)
# The relay's query: the pending rows due now, oldest first.
sa.Index("outbox_due", outbox.c.state, outbox.c.next_attempt_at)
