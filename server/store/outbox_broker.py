"""The outbox side of notifications: a message broker that writes to the store's outbox table.

Given to the mediators as their ``message_broker``, :class:`OutboxBroker` turns sending a
notification into staging a row in the ``outbox`` table, in the unit of work of the item that
emitted it: the row is committed in the same transaction as what the item's other event handlers
wrote, or not at all. In ``strict`` delivery the item reaches the client after that commit, so a
delivered item's notification is durable even if the broker is down or the process dies. The relay
(:mod:`server.store.relay`) publishes the rows to the configured broker afterwards, with retries,
keyed by ``message_id``.

After each group commit that wrote outbox rows, :attr:`OutboxBroker.on_committed` hooks are called
(the relay's ``notify``), so publishing starts at once rather than at the relay's next poll.
"""

from __future__ import annotations

import datetime
import typing

from mediator.message_brokers.protocol import Message
from server.store.schema import outbox
from server.store.store import Store
from server.store.units import Write

__all__ = ["OutboxBroker", "outbox_row"]


def outbox_row(message: Message, now: datetime.datetime | None = None) -> dict[str, typing.Any]:
    """The outbox row of ``message``: pending, due now."""
    now = now if now is not None else datetime.datetime.now(datetime.UTC)
    return {
        "message_id": message.message_id,
        "message_name": message.message_name,
        "topic": message.topic,
        "occurred_at": message.occurred_at,
        "payload": message.payload,
        "created_at": now,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
    }


_INSERT = outbox.insert()


class OutboxBroker:
    """A :class:`~mediator.message_brokers.protocol.MessageBroker` staging outbox rows (module docs)."""

    def __init__(self, store: Store, *, name: str = "outbox") -> None:
        self.store = store
        self.name = name
        self.on_committed: list[typing.Callable[[], None]] = []
        """Called after each committed group that holds outbox rows (once per group)."""
        self.staged = 0
        """Messages staged since start."""

    async def send_message(self, message: Message) -> None:
        """Stage ``message`` in the current unit (else write it now, in a unit of its own)."""
        await self.store.write(Write(_INSERT, outbox_row(message)), after_commit=self._committed)
        self.staged += 1

    def _committed(self) -> None:
        for hook in self.on_committed:
            hook()

    async def aclose(self) -> None:
        """Nothing to close: the rows are the store's, closed with it."""
