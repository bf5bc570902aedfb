"""A broker that drops every message: for services whose notifications nobody consumes."""

from __future__ import annotations

from mediator.message_brokers.protocol import Message

__all__ = ["DevnullMessageBroker"]


class DevnullMessageBroker:
    """Accepts and discards every message."""

    async def send_message(self, message: Message) -> None:
        del message

    async def aclose(self) -> None:
        return None
