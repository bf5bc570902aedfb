"""A broker the test holds: the real service's event processing, made to really suspend.

The service's own event handlers never suspend; its notifications do, in the broker, and
``create_server(settings, broker=...)`` takes any. Each ``send_message`` here parks until the test
opens ``gate`` (or for good), which gives a test an event-handler run provably in flight.
"""

from __future__ import annotations

import asyncio
import typing

from mediator.message_brokers.protocol import Message

__all__ = ["FailingBroker", "GatedBroker"]


class GatedBroker:
    """A broker whose sends park until ``gate`` is set; ``log`` records what happened, in order."""

    def __init__(self, hold: typing.Callable[[str], bool] = lambda order_id: True) -> None:
        self.hold = hold  # which orders' notifications wait at the gate (default: all)
        self.gate = asyncio.Event()
        self.parked = asyncio.Event()  # set when the first send is waiting at the gate
        self.log: list[str] = []
        self.messages: list[Message] = []

    async def send_message(self, message: Message) -> None:
        order_id = message.payload["order_id"]
        self.log.append(f"{order_id} sending")
        try:
            if self.hold(order_id):
                self.parked.set()
                await self.gate.wait()
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
