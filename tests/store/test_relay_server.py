"""The server's notifications go through the outbox: every delivered item's notification reaches the
broker, published by the relay the server runs (the demo, its embedded store or PostgreSQL)."""

from __future__ import annotations

import asyncio
import pathlib
import typing

import grpc
import sqlalchemy as sa

from mediator.message_brokers.memory import InMemoryMessageBroker
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings
from server.store.relay import OutboxRelay
from server.store.schema import outbox
from server.testing import serving
from tests.brokers.consumer import Consumer
from tests.store.outbox_fixtures import (  # noqa: F401 - the *_fixture names are pytest fixtures
    database_url_fixture,
    exchange_name_fixture,
    rabbitmq_fixture,
)

WITHIN = 30
ORDERS = [f"order-{index}" for index in range(20)]


def relay_of(server: RillServer) -> OutboxRelay:
    [relay] = [each for each in server.resources if isinstance(each, OutboxRelay)]
    return relay


def store_settings(database_url: str, tmp_path: pathlib.Path, **changes: typing.Any) -> Settings:
    """The store ``database_url`` names; for SQLite the embedded default (empty: ``<state_dir>/rill.db``),
    never the tests' ``RILL_DATABASE_URL=memory``."""
    url = "" if database_url.startswith("sqlite") else database_url
    return Settings(database_url=url, state_dir=tmp_path / "state", **changes)


async def process_orders(channel: grpc.aio.Channel) -> list[orders_pb2.OrderProcessedResult]:
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    request = orders_pb2.ProcessOrdersRequest(order_ids=ORDERS)
    return [result async for result in stub.ProcessOrders(request)]


async def outbox_ids(server: RillServer) -> list[str]:
    relay = relay_of(server)
    async with relay.engine.connect() as connection:
        result = await connection.execute(sa.select(outbox.c.message_id).order_by(outbox.c.created_at))
        return [str(each) for each in result.scalars()]


async def test_every_delivered_order_is_notified_to_the_memory_broker_through_the_outbox(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    broker = InMemoryMessageBroker(capacity=None)
    async with serving(settings=store_settings(database_url, tmp_path), broker=broker) as served:
        delivered = await process_orders(served.channel)
        relay = relay_of(served.server)
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.published >= len(delivered))
        staged = await outbox_ids(served.server)
        assert served.server.metrics is not None
        registry = served.server.metrics.registry
        assert registry.get_sample_value("rill_outbox_published_total") == len(ORDERS)
        assert registry.get_sample_value("rill_outbox_relay_publishing") == 1

    assert [result.order_id for result in delivered] == ORDERS
    notified = [message for message in broker.messages if message.topic == "orders.processed"]
    assert sorted(message.payload["order_id"] for message in notified) == sorted(ORDERS)
    assert sorted(str(message.message_id) for message in notified) == sorted(staged)


async def test_every_delivered_order_is_notified_to_rabbitmq_through_the_outbox(
    database_url: str, tmp_path: pathlib.Path, rabbitmq: str, exchange_name: str
) -> None:
    settings = store_settings(database_url, tmp_path, broker=f"{rabbitmq}?exchange={exchange_name}")
    async with Consumer(rabbitmq, exchange_name, "orders.processed") as consumer:
        async with serving(settings=settings) as served:
            delivered = await process_orders(served.channel)
            received = await consumer.wait_for(len(delivered), within=WITHIN)
            staged = await outbox_ids(served.server)
        everything = await consumer.everything()

    assert [result.order_id for result in delivered] == ORDERS
    assert sorted(each.envelope["payload"]["order_id"] for each in received) == sorted(ORDERS)
    assert sorted(each.message_id or "" for each in everything) == sorted(staged)  # each once
