"""Units of work of a store: the writes one stream item's event handlers stage, committed at once.

The mediator opens a unit per item that emitted events and makes it current while the item's
event handlers run (:func:`mediator.current_unit`). A handler stages its writes into it; nothing is
written until the mediator commits the unit, once every handler of the item has succeeded::

    class OrderShippedHandler(mediator.EventHandler[OrderShipped]):
        def __init__(self, store: Store) -> None:
            self._store = store

        async def handle(self, event: OrderShipped) -> None:
            await self._store.write(
                upsert(shipments, {"order_id": event.order_id, "shipped_at": event.at}),
                Write(sa.update(orders).where(orders.c.order_id == event.order_id).values(status="shipped")),
            )

:meth:`Store.write <server.store.store.Store.write>` stages into the current unit when it is the
store's (else commits a unit of its own). What can be staged:

- :class:`Write`: a statement (an ``INSERT``, ``UPDATE``, ``DELETE``, or :func:`upsert`) with its
  parameters. Consecutive writes through the same statement in a group are sent as one
  ``executemany``.
- an operation: ``async def op(connection: AsyncConnection) -> None``, for what needs more than one
  statement (reading, then writing in the same transaction).

Both may run more than once: when a group's transaction fails, each unit of it is tried again in a
transaction of its own (:mod:`server.store.committer`). So they only touch the database: no
effects in memory, which would happen twice or for a unit that was never written; those go in
:meth:`StoreUnit.after_commit`.

Event handlers of one item run concurrently, in separate tasks: a unit takes writes from all of them
(one thread, so no lock), in the order they were staged. A write staged after the unit was committed
or rolled back raises :class:`UnitClosed`: it would belong to no transaction.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.errors import UnitClosed

if typing.TYPE_CHECKING:
    from server.store.committer import GroupCommitter

__all__ = ["Operation", "StoreUnit", "StoreUnits", "Upsert", "Write", "upsert"]

Operation: typing.TypeAlias = typing.Callable[[AsyncConnection], typing.Awaitable[None]]
Parameters: typing.TypeAlias = typing.Mapping[str, typing.Any]


@dataclasses.dataclass(frozen=True)
class Upsert:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE`` of every other column, in the database's dialect."""

    table: sa.Table

    def statement(self, dialect: sa.Dialect) -> sa.Executable:
        return _upsert_statement(self.table, dialect.name)


@functools.cache
def _upsert_statement(table: sa.Table, dialect_name: str) -> sa.Executable:
    keys = [column.name for column in table.primary_key.columns]
    others = [column.name for column in table.columns if column.name not in keys]
    # Both dialects spell it the same way, with their own Insert class.
    if dialect_name == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={name: pg.excluded[name] for name in others}
        )
    if dialect_name == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=keys, set_={name: lite.excluded[name] for name in others}
        )
    raise NotImplementedError(f"upsert on {dialect_name}: the store runs on PostgreSQL or SQLite")


@dataclasses.dataclass(frozen=True)
class Write:
    """One statement with its parameters (None: the statement carries its values)."""

    statement: sa.Executable | Upsert
    parameters: Parameters | None = None

    def resolved(self, dialect: sa.Dialect) -> sa.Executable:
        statement = self.statement
        return statement.statement(dialect) if isinstance(statement, Upsert) else statement


def upsert(table: sa.Table, row: Parameters) -> Write:
    """A write that inserts ``row`` into ``table``, or updates the row with its primary key."""
    return Write(Upsert(table), dict(row))


Staged: typing.TypeAlias = "Write | Operation"


class _State(enum.Enum):
    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"


class StoreUnit:
    """One item's writes (a :class:`mediator.UnitOfWork`); see the module docs."""

    __slots__ = ("_after_commit", "_committer", "_state", "staged")

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer
        self._state = _State.OPEN
        self._after_commit: list[typing.Callable[[], None]] = []
        self.staged: list[Staged] = []
        """What was staged, in order."""

    @property
    def store_committer(self) -> GroupCommitter:
        """The committer the unit goes to: units of one store share it."""
        return self._committer

    def stage(self, *writes: Staged) -> None:
        """Add ``writes`` (each a :class:`Write` or an operation) to the unit's transaction."""
        if self._state is not _State.OPEN:
            raise UnitClosed(f"the unit is {self._state.value}: a write staged now would never be written")
        self.staged.extend(writes)

    def after_commit(self, callback: typing.Callable[[], None]) -> None:
        """Call ``callback`` once the unit is durable (not at all if it is not). Callbacks equal to each
        other are called once per committed group: ``relay.notify`` wakes the relay once per group."""
        if self._state is not _State.OPEN:
            raise UnitClosed(f"the unit is {self._state.value}")
        self._after_commit.append(callback)

    @property
    def callbacks(self) -> typing.Sequence[typing.Callable[[], None]]:
        return self._after_commit

    async def commit(self, *, wait_for_group: float = 0.0) -> None:
        """Write everything staged in one transaction (grouped with other units'), or raise
        :class:`~server.store.errors.CommitFailed` with nothing of it written. With
        ``wait_for_group``, in the next group another unit starts, if one does within that many
        seconds (:class:`~server.store.committer.GroupCommitter`)."""
        if self._state is not _State.OPEN:
            raise UnitClosed(f"the unit is {self._state.value}: it cannot be committed")
        self._state = _State.COMMITTING
        try:
            if self.staged:
                await self._committer.commit(self, wait_for_group=wait_for_group)
            else:
                for callback in self._after_commit:
                    callback()
        except BaseException:
            # Not `staged.clear()`: a commit cancelled while its group's transaction runs must not
            # shorten the unit under the transaction's feet (it is written whole, or not at all).
            self._state = _State.ROLLED_BACK
            raise
        self._state = _State.COMMITTED

    def rollback(self) -> None:
        """Drop everything staged: nothing of the unit is written. A no-op once committed."""
        if self._state is _State.OPEN:
            self._state = _State.ROLLED_BACK
            self.staged.clear()
            self._after_commit.clear()

    @property
    def open(self) -> bool:
        return self._state is _State.OPEN


class StoreUnits:
    """The factory of a store's units: what the app passes as ``unit_of_work=`` to the mediators."""

    def __init__(self, committer: GroupCommitter) -> None:
        self.committer = committer

    def begin(self) -> StoreUnit:
        return StoreUnit(self.committer)
