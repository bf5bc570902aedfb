"""The machine's PostgreSQL and RabbitMQ, as replicas share them: a database and an exchange of the
test's own (random names), with a queue bound before anything is published; all removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import typing
import uuid

import asyncpg
import pytest

from client import NotFound, RetryPolicy, RillClient
from tests.brokers.consumer import Consumer, Received

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


@contextlib.asynccontextmanager
async def fresh_database() -> typing.AsyncIterator[str]:
    """A new PostgreSQL database (``CREATE DATABASE rill_test_<random>``), dropped afterwards."""
    name = f"rill_test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            # FORCE: a server killed with SIGKILL may leave a connection PostgreSQL has not closed yet.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url() -> typing.AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


class Notifications(Consumer):
    """The ``orders.processed`` notifications, as a subscriber of the exchange receives them."""

    async def wait_until(
        self, done: typing.Callable[[list[Received]], bool], within: float = 60
    ) -> list[Received]:
        """The messages received once ``done`` says they are enough (TimeoutError after ``within`` s)."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: done(self.received))
            return list(self.received)


@pytest.fixture
async def notifications() -> typing.AsyncIterator[Notifications]:
    """An exchange of the test's own (``rill.test.<random>``, deleted afterwards) and a queue bound to
    it (exclusive, deleted with the consumer's connection), consumed from the start."""
    consumer = order_notifications()
    async with consumer:
        yield consumer


def order_notifications() -> Notifications:
    return Notifications(RABBITMQ, f"rill.test.{uuid.uuid4().hex}", "orders.processed")


def broker_url(notifications: Notifications) -> str:
    """``RILL_BROKER`` for servers that publish to the test's exchange."""
    return f"{RABBITMQ}?exchange={notifications.exchange_name}"


def message_ids_per_order(received: typing.Iterable[Received]) -> dict[str, set[str | None]]:
    """Each order's notifications, by AMQP ``message_id``."""
    per_order: dict[str, set[str | None]] = {}
    for message in received:
        per_order.setdefault(str(message.envelope["payload"]["order_id"]), set()).add(message.message_id)
    return per_order


async def found_orders(address: str, order_ids: typing.Sequence[str]) -> int:
    """How many of ``order_ids`` GetOrder finds at ``address`` (32 calls at a time)."""
    limit = asyncio.Semaphore(32)
    async with RillClient(
        address, retry=RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.5)
    ) as client:

        async def found(order_id: str) -> bool:
            async with limit:
                try:
                    return (await client.get_order(order_id)).order_id == order_id
                except NotFound:
                    return False

        return sum(await asyncio.gather(*map(found, order_ids)))
