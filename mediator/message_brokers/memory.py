"""A broker that keeps what it received, in order: for tests and the embedded default."""

from __future__ import annotations

from mediator.exceptions import MediatorClosed
from mediator.message_brokers.protocol import Message

__all__ = ["InMemoryMessageBroker"]


class InMemoryMessageBroker:
    """Records every message it is sent; ``messages`` lists them in arrival order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._closed = False

    async def send_message(self, message: Message) -> None:
        if self._closed:
            raise MediatorClosed("InMemoryMessageBroker is closed")
        self.messages.append(message)

    def by_topic(self, topic: str) -> list[Message]:
        return [message for message in self.messages if message.topic == topic]

    async def aclose(self) -> None:
        self._closed = True
