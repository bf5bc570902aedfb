"""Group commit: the units of every concurrent stream written in one transaction.

One item round of 1,000 strict streams is 1,000 units; committed one by one that is 1,000
transactions (1,000 fsyncs on SQLite, 1,000 round trips to PostgreSQL) per round. The committer
instead collects the units committed while the previous transaction ran (with ``max_delay``, also
those arriving up to that long after the first; at most ``max_units``) and writes them in one
transaction; while that transaction runs, the next group
collects. Each unit's ``commit()`` returns when the transaction that holds it has committed.

If a group's transaction fails, each of its units is tried again in a transaction of its own, so
that one bad unit (a constraint it breaks) fails only its own ``commit()``, and the stream that
staged it, with :class:`CommitFailed`.

Writes go table by table: between two operations (:data:`~server.store.units.Operation`, which run
where they were staged), the writes to each table run in the order of the group (unit after unit,
each unit's in the order it staged them), and consecutive writes through one statement go as one
``executemany``: a group of 1,000 units of an order row and an outbox row is two round trips, not
2,000. The end state is the same as writing unit after unit, because writes to different tables do
not affect each other; a foreign key from one table to another may make a group fail (a child row
before its parent), and each unit alone is then written in its own order. Writes whose tables depend
on each other through triggers belong in one operation.

A unit committed with ``wait_for_group`` does not start a transaction for itself: it rides in the
next group another unit starts, or, if none does within that many seconds, in one of its own. The
relay records what it published that way (:mod:`server.store.relay`): one transaction and one fsync
per group instead of two, when every commit wakes the relay (a lone stream).

A ``commit()`` cancelled before its group began is taken out of it (nothing of the unit is
written); once its transaction runs, the unit may be written although the caller stopped waiting.
:meth:`GroupCommitter.aclose` writes what is waiting, then takes no more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import typing

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.store.errors import CommitFailed, StoreClosed, StoreUnreachable
from server.store.units import StoreUnit, Upsert, Write

__all__ = ["GroupCommitter"]

logger = logging.getLogger("server.store")

RIDE_SLACK = 0.002
"""Seconds before its deadline a riding unit's wait counts as over (timer resolution)."""


class _Waiting(typing.NamedTuple):
    unit: StoreUnit
    done: asyncio.Future[None]
    rides_until: float | None = None
    """``wait_for_group``'s deadline (loop time): until then the unit starts no transaction."""


class GroupCommitter:
    """Writes the units given to :meth:`commit` in grouped transactions (see the module docs)."""

    def __init__(self, engine: AsyncEngine, *, max_delay: float = 0.0, max_units: int = 1000) -> None:
        if max_delay < 0 or max_units < 1:
            raise ValueError("max_delay must be >= 0 and max_units >= 1")
        self.engine = engine
        self.max_delay = max_delay
        self.max_units = max_units
        self.on_committed: list[typing.Callable[[int], None]] = []
        """Called with the number of units after each committed transaction (metrics)."""
        self.transactions = 0
        """Transactions committed."""
        self.units_committed = 0
        self.units_failed = 0
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._riders = 0  # units waiting with wait_for_group

    async def commit(self, unit: StoreUnit, *, wait_for_group: float = 0.0) -> None:
        """Write ``unit`` (in the next group); :class:`CommitFailed` if its transaction failed.

        With ``wait_for_group`` (seconds), the unit waits for a group another unit starts, that long
        at most, rather than starting one (module docs)."""
        if self._closed:
            raise StoreClosed("the store is closed: the unit was not written")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        rides_until = loop.time() + wait_for_group if wait_for_group > 0 else None
        self._waiting.append(_Waiting(unit, done, rides_until))
        if rides_until is not None:
            self._riders += 1
        self._arrived.set()  # for a rider: the loop's wait now ends at its deadline, at the latest
        if len(self._waiting) >= self.max_units:
            self._full.set()
        if self._task is None:
            # A context of its own: the loop must not run inside the first committer's (its unit current).
            self._task = loop.create_task(
                self._run(), name="rill store group commit", context=contextvars.Context()
            )
        # Cancelling this await cancels `done`: the loop then leaves the unit out if it has not begun.
        await done

    async def aclose(self) -> None:
        """Write the units still waiting, then stop; later commits raise :class:`StoreClosed`."""
        self._closed = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        try:
            while True:
                if not self._due():
                    if self._closed and not self._waiting:
                        return
                    self._arrived.clear()
                    await self._next_arrival()
                    continue
                if self.max_delay and not self._closed and len(self._waiting) < self.max_units:
                    # Let the other streams' units join; a full group goes at once.
                    try:
                        async with asyncio.timeout(self.max_delay):
                            await self._full.wait()
                    except TimeoutError:
                        pass
                group = self._take()
                if group:
                    await self._write(group)
        finally:
            # Only a bug ends the loop with units waiting: none of them may wait forever.
            while self._waiting:
                waiting = self._waiting.popleft()
                if not waiting.done.done():
                    waiting.done.set_exception(StoreClosed("the store's committer stopped: not written"))

    def _due(self) -> bool:
        """Whether a group should start: a unit waits that does not ride, or a rider's wait is over."""
        if len(self._waiting) > self._riders or (self._closed and self._waiting):
            return True
        ends = self._first_ride_end()
        # The loop's timers may fire up to their resolution early (uvloop's: a millisecond).
        return ends is not None and ends <= asyncio.get_running_loop().time() + RIDE_SLACK

    def _first_ride_end(self) -> float | None:
        ends = [waiting.rides_until for waiting in self._waiting if waiting.rides_until is not None]
        return min(ends) if ends else None

    async def _next_arrival(self) -> None:
        """Wait for the next unit (or :meth:`aclose`), or until the first rider's wait is over."""
        ends = self._first_ride_end()
        if ends is None:
            await self._arrived.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(ends):
                await self._arrived.wait()

    def _take(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        while self._waiting and len(group) < self.max_units:
            waiting = self._waiting.popleft()
            if waiting.rides_until is not None:
                self._riders -= 1
            if not waiting.done.done():  # done already: its commit() was cancelled
                group.append(waiting)
        if len(self._waiting) < self.max_units:
            self._full.clear()
        if not self._waiting:
            self._arrived.clear()
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        try:
            await self._transaction([waiting.unit for waiting in group])
        except Exception as error:
            if len(group) == 1:
                self._failed(group[0], error)
                return
            logger.warning(
                "a group commit of %d units failed (%s); committing them one by one", len(group), error
            )
            for waiting in group:
                try:
                    await self._transaction([waiting.unit])
                except Exception as alone:
                    self._failed(waiting, alone)
                else:
                    self._committed([waiting])
            return
        self._committed(group)

    def _committed(self, group: list[_Waiting]) -> None:
        self.transactions += 1
        self.units_committed += len(group)
        callbacks: dict[typing.Callable[[], None], None] = {}
        for waiting in group:
            callbacks.update(dict.fromkeys(waiting.unit.callbacks))
            if not waiting.done.done():
                waiting.done.set_result(None)
        for hook in self.on_committed:
            hook(len(group))
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("an after-commit callback failed (the units are committed)")

    def _failed(self, waiting: _Waiting, error: Exception) -> None:
        self.units_failed += 1
        logger.error("a unit of work was not written: %s", error)
        if not waiting.done.done():
            kind = StoreUnreachable if _unreachable(error) else CommitFailed
            failed = kind(f"the unit's transaction failed, nothing of it was written: {error}")
            failed.__cause__ = error
            waiting.done.set_exception(failed)

    async def _transaction(self, units: list[StoreUnit]) -> None:
        async with self.engine.begin() as connection:
            await _apply(connection, units)


async def _apply(connection: AsyncConnection, units: list[StoreUnit]) -> None:
    """Every staged write of ``units``: table by table between operations (see the module docs)."""
    dialect = connection.dialect
    # Writes since the last operation, per table in the order tables first appear; each table's in
    # the order of the group (unit after unit, each unit's as staged).
    tables: dict[object, list[Write]] = {}

    async def flush() -> None:
        for writes in tables.values():
            await _execute_runs(connection, writes, dialect)
        tables.clear()

    for unit in units:
        for staged in unit.staged:
            if not isinstance(staged, Write):
                await flush()
                await staged(connection)
                continue
            table = _table_of(staged)
            if table is None:  # not a plain INSERT/UPDATE/DELETE: where it stands, like an operation
                await flush()
                await _execute_runs(connection, [staged], dialect)
                continue
            tables.setdefault(table, []).append(staged)
    await flush()


def _table_of(write: Write) -> object | None:
    """The table a write changes, if it is a plain DML statement on one table (else None)."""
    statement = write.statement
    if isinstance(statement, Upsert):
        return statement.table
    if isinstance(statement, sa.Insert | sa.Update | sa.Delete):
        return statement.table
    return None


async def _execute_runs(connection: AsyncConnection, writes: list[Write], dialect: sa.Dialect) -> None:
    """``writes`` in order; consecutive ones through the same statement as one executemany."""
    run_statement: sa.Executable | None = None
    run: list[typing.Mapping[str, typing.Any]] = []
    for write in writes:
        statement = write.resolved(dialect)
        if write.parameters is None or statement is not run_statement:
            if run_statement is not None:
                await connection.execute(run_statement, run)
                run_statement, run = None, []
            if write.parameters is None:
                await connection.execute(statement)
                continue
            run_statement = statement
        run.append(write.parameters)
    if run_statement is not None:
        await connection.execute(run_statement, run)


def _unreachable(error: Exception) -> bool:
    """The database could not be reached (rather than refusing what the unit wrote)."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated or isinstance(error.orig, OSError):
            return True
        # SQLite: another process held the write lock for the whole busy timeout.
        return isinstance(error, sa.exc.OperationalError) and "database is locked" in str(error.orig)
    return False
