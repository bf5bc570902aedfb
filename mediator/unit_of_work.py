"""Units of work: what one item's event handlers change, committed together before the item counts.

A mediator given a :class:`UnitOfWorkFactory` (``bootstrap(..., unit_of_work=...)``) opens one unit
per stream item that emitted events (per request for ``send``), runs every handler of those events,
and of the events they emit in turn, with that unit current (:func:`current_unit`), and once all of
them have succeeded commits it:

- ``strict`` delivery: the item reaches the consumer only after its unit committed; a failed run or
  a failed commit ends the stream before the item (the unit is rolled back, nothing of it is kept).
- ``overlapped`` delivery: the commit runs in the background like the runs themselves, under the
  same rules (the stream ends only when every unit has committed; a failure ends it at the next item).
- An early stop (cancel, disconnect, shutdown) drains the runs as before, and each item whose runs
  all finished is committed: the events of delivered items are not lost.

The mediator knows nothing of what a unit holds. A store's unit typically stages the writes handlers
make (rows, outbox messages) and writes them in one transaction at ``commit``; commits of many
streams' units may be grouped into one transaction (group commit). Units run concurrently in
separate tasks, so a unit must accept staging from several tasks at once (asyncio, one thread).
A commit can be cancelled (a drain giving up when the server cannot wait any longer): the store
then writes the unit whole or not at all, never part of it.
"""

from __future__ import annotations

import contextvars
import typing

__all__ = ["UnitOfWork", "UnitOfWorkFactory", "current_unit"]


@typing.runtime_checkable
class UnitOfWork(typing.Protocol):
    """One item's changes, kept until ``commit`` writes them all or ``rollback`` drops them all."""

    async def commit(self) -> None:
        """Make every change of the unit durable at once; raise if that failed (nothing kept)."""
        ...

    def rollback(self) -> None:
        """Drop every change of the unit (a run failed or was cancelled): nothing of it is written."""
        ...


@typing.runtime_checkable
class UnitOfWorkFactory(typing.Protocol):
    """Opens units of work: one per stream item that emitted events."""

    def begin(self) -> UnitOfWork: ...


_current: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "mediator_unit_of_work", default=None
)


def current_unit() -> UnitOfWork | None:
    """The unit of work of the event-handler run in progress (None outside one, or without a factory)."""
    return _current.get()
