"""The real RabbitMQ broker, noting what it was asked to send and what it reported as sent."""

from __future__ import annotations

import typing

from mediator.message_brokers.protocol import Message
from mediator.message_brokers.rabbitmq import RabbitMQMessageBroker

__all__ = ["FAST", "Backoff", "RecordingBroker"]


class Backoff(typing.TypedDict):
    backoff: float
    max_backoff: float


FAST = Backoff(backoff=0.01, max_backoff=0.05)
"""Retries close together, so that tests of giving up do not wait."""


class RecordingBroker(RabbitMQMessageBroker):
    """``confirmed`` lists the messages whose ``send_message`` returned: what the broker claimed sent.

    ``before_send(n)`` runs before the *n*-th message (from 1) is published, in the sending task:
    a test uses it to act at an exact point of a stream (hold RabbitMQ's acknowledgements, say).
    """

    def __init__(
        self, *args: typing.Any, before_send: typing.Callable[[int], None] | None = None, **kwargs: typing.Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.before_send = before_send
        self.attempted: list[Message] = []
        self.confirmed: list[Message] = []
        self.failed: list[tuple[Message, BaseException]] = []

    async def send_message(self, message: Message) -> None:
        self.attempted.append(message)
        if self.before_send is not None:
            self.before_send(len(self.attempted))
        try:
            await super().send_message(message)
        except Exception as error:
            self.failed.append((message, error))
            raise
        self.confirmed.append(message)
