"""A broker the test holds: the real service's event processing, made to really suspend.

The service's own event handlers never suspend; its notifications do, in the broker, and
``create_server(settings, broker=...)`` takes any. Each ``send_message`` here parks until the test
opens ``gate`` (or for good), which gives a test an event-handler run provably in flight.
"""

from __future__ import annotations

import asyncio
import collections
import typing

from mediator.message_brokers.protocol import Message

__all__ = ["FailingBroker", "GatedBroker", "StubbornBroker"]


class GatedBroker:
    """A broker whose sends park until ``gate`` is set; ``log`` records what happened, in order."""

    def __init__(self, gates: typing.Mapping[str, asyncio.Event] | None = None) -> None:
        self.gate = asyncio.Event()
        # Which orders' notifications wait, each at its own gate (default: all, at ``gate``).
        self.gates = gates
        self.parked = asyncio.Event()  # set when the first send is waiting at a gate
        self.parked_at: collections.defaultdict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.log: list[str] = []
        self.messages: list[Message] = []

    async def send_message(self, message: Message) -> None:
        order_id = message.payload["order_id"]
        self.log.append(f"{order_id} sending")
        try:
            gate = self.gate if self.gates is None else self.gates.get(order_id)
            if gate is not None:
                self.parked.set()
                self.parked_at[order_id].set()
                await gate.wait()
        except asyncio.CancelledError:
            self.log.append(f"{order_id} cancelled")
            raise
        if "closed" in self.log:
            raise RuntimeError("sent after aclose")
        self.messages.append(message)
        self.log.append(f"{order_id} sent")

    async def aclose(self) -> None:
        self.log.append("closed")


class FailingBroker(GatedBroker):
    """A broker that cannot connect: ``start`` fails, as an unreachable RabbitMQ does."""

    started = False

    async def start(self) -> None:
        raise ConnectionError("broker unreachable")


class StubbornBroker(GatedBroker):
    """A broker whose send ignores its cancellation until ``gate`` opens: a run that will not stop.

    (It breaks the rule that cancellation is never swallowed, on purpose: it is what the server's
    stop must not wait for forever.)
    """

    async def send_message(self, message: Message) -> None:
        order_id = message.payload["order_id"]
        self.log.append(f"{order_id} sending")
        self.parked.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.log.append(f"{order_id} ignores its cancellation")
            await self.gate.wait()
            raise
