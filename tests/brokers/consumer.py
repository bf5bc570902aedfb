"""A consumer of the notification exchange, for tests: what subscribers of the service would see."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import typing
import uuid

import aio_pika
import aio_pika.abc

__all__ = ["Consumer", "Received"]

MARKER_TYPE = "rill.test.marker"


@dataclasses.dataclass(frozen=True)
class Received:
    """One message as it arrived on the consumer's queue."""

    envelope: dict[str, typing.Any]
    routing_key: str | None
    message_id: str | None
    type: str | None
    content_type: str | None
    delivery_mode: int | None
    timestamp: typing.Any
    app_id: str | None

    @property
    def file_id(self) -> str:
        return str(self.envelope["payload"]["file_id"])


class Consumer:
    """An exclusive, auto-deleted queue bound to ``exchange`` with ``routing_key``; records arrivals.

    The exchange is declared as the broker declares it (durable topic) and deleted on close, so
    each test owns a fresh one. Connects to RabbitMQ directly, never through the test's proxy.
    """

    def __init__(self, url: str, exchange: str, routing_key: str) -> None:
        self.url = url
        self.exchange_name = exchange
        self.routing_key = routing_key
        self.received: list[Received] = []
        self._arrived = asyncio.Condition()
        self._markers: set[str] = set()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self.url, timeout=10)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=self.routing_key)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with self._arrived:
            if message.type == MARKER_TYPE:
                self._markers.add(message.message_id or "")
            else:
                self.received.append(
                    Received(
                        envelope=json.loads(message.body),
                        routing_key=message.routing_key,
                        message_id=message.message_id,
                        type=message.type,
                        content_type=message.content_type,
                        delivery_mode=message.delivery_mode,
                        timestamp=message.timestamp,
                        app_id=message.app_id,
                    )
                )
            self._arrived.notify_all()

    async def wait_for(self, count: int, within: float = 10) -> list[Received]:
        """The messages received once there are at least ``count`` (TimeoutError after ``within`` s)."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
            return list(self.received)

    async def everything(self, within: float = 10) -> list[Received]:
        """Every message confirmed to the exchange before this call, and nothing published later.

        Publishes a marker through the exchange and waits for it: RabbitMQ keeps a queue in order,
        so whatever it confirmed before the marker is in the queue ahead of it.
        """
        assert self._exchange is not None
        marker = uuid.uuid4().hex
        await self._exchange.publish(
            aio_pika.Message(b"{}", type=MARKER_TYPE, message_id=marker), routing_key=self.routing_key
        )
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: marker in self._markers)
            return list(self.received)

    async def aclose(self) -> None:
        if self._connection is None:
            return
        try:
            if self._exchange is not None:
                await self._exchange.delete()
        finally:
            await self._connection.close()
            self._connection = None

    async def __aenter__(self) -> Consumer:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
