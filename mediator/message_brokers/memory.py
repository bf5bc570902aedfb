"""A broker that keeps what it received, in order: for tests and the embedded default."""

from __future__ import annotations

import collections
import logging

from mediator.exceptions import MediatorClosed
from mediator.message_brokers.protocol import Message

__all__ = ["DEFAULT_CAPACITY", "InMemoryMessageBroker"]

logger = logging.getLogger("mediator.message_brokers.memory")

DEFAULT_CAPACITY = 10_000
"""Messages an :class:`InMemoryMessageBroker` keeps unless told otherwise (~2 KiB each)."""


class InMemoryMessageBroker:
    """Keeps the last ``capacity`` messages it is sent; ``messages`` lists them in arrival order.

    Nobody consumes them (it is the embedded default and a test double), so it is bounded: beyond
    ``capacity`` the oldest message is dropped, ``dropped`` counts them, and the first drop is logged.
    ``capacity=None`` keeps everything (for a test that must see every message).
    """

    def __init__(self, capacity: int | None = DEFAULT_CAPACITY) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be at least 1 (or None: unbounded)")
        self.capacity = capacity
        self._messages: collections.deque[Message] = collections.deque(maxlen=capacity)
        self.received = 0
        self.dropped = 0
        self._closed = False

    @property
    def messages(self) -> list[Message]:
        """The messages kept, oldest first (a copy)."""
        return list(self._messages)

    async def send_message(self, message: Message) -> None:
        if self._closed:
            raise MediatorClosed("InMemoryMessageBroker is closed")
        self.received += 1
        if self.capacity is not None and len(self._messages) == self.capacity:
            if not self.dropped:
                logger.warning(
                    "InMemoryMessageBroker keeps the last %d messages: dropping the oldest from now on",
                    self.capacity,
                )
            self.dropped += 1
        self._messages.append(message)

    def by_topic(self, topic: str) -> list[Message]:
        return [message for message in self._messages if message.topic == topic]

    async def aclose(self) -> None:
        self._closed = True
