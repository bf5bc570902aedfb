"""Load, CI-sized: 100 concurrent ProcessOrders streams x 20 items against the real service.

Nothing is lost: every client gets all its items, in order, once; every emitted event is handled
exactly once (counted by the service's own event handlers and broker). The 1,000 x 100 version,
with figures, is ``python -m bench load`` (bench/load.py).
"""

from __future__ import annotations

import asyncio

import grpc

from mediator.message_brokers.memory import InMemoryMessageBroker
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer
from server.services.orders import OrderAnalytics, OrderBook

STREAMS = 100
ITEMS = 20
CHANNELS = 4


async def test_100_concurrent_streams_lose_nothing(
    rill_server: RillServer, broker: InMemoryMessageBroker
) -> None:
    channels = [grpc.aio.insecure_channel(rill_server.address) for _ in range(CHANNELS)]
    try:

        async def one_stream(stream: int) -> list[str]:
            stub = orders_pb2_grpc.OrderServiceStub(channels[stream % CHANNELS])
            ids = [f"load{stream}-{item}" for item in range(ITEMS)]
            call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
            received = [result.order_id async for result in call]
            assert await call.code() == grpc.StatusCode.OK
            return received

        results = await asyncio.gather(*(one_stream(stream) for stream in range(STREAMS)))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))

    expected = [[f"load{stream}-{item}" for item in range(ITEMS)] for stream in range(STREAMS)]
    assert results == expected, "every client got all its items, in order, without duplicates"
    assert await rill_server.calls.wait_idle(10)
    book: OrderBook = rill_server.handlers.order_book()
    analytics: OrderAnalytics = rill_server.handlers.order_analytics()
    assert len(book) == STREAMS * ITEMS, "one OrderProcessedEvent recorded per item"
    assert analytics.per_category == {"electronics": STREAMS * ITEMS}, (
        "one OrderAnalyticsEvent handled per item"
    )
    notifications = broker.by_topic("orders.processed")
    assert len(notifications) == STREAMS * ITEMS
    assert len({message.payload["order_id"] for message in notifications}) == STREAMS * ITEMS
