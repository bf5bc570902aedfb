"""The demo with a store, through the real server: units per item, strict delivery after the commit,
group commit across streams, a failing event handler keeping nothing of its item."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import typing

import grpc
import pytest
import sqlalchemy as sa

import mediator
from mediator import bootstrap
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import Rpc, ServiceBinding, Settings
from server.apps import App
from server.demo import Handlers
from server.services import orders
from server.store import OutboxBroker, Store
from server.store.read_models import StoredOrderBook
from server.store.relay import OutboxRelay
from server.store.schema import outbox
from server.testing import serving

STREAMS = 100
ITEMS = 10


def own_connection(address: str) -> grpc.aio.Channel:
    """A channel on a TCP connection of its own (grpc shares one between equal channels otherwise)."""
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


async def test_every_item_is_readable_on_another_connection_when_it_arrives(
    store_settings: dict[str, typing.Any],
) -> None:
    """Strict delivery: an item reaches the client after its unit committed, so GetOrder on another
    connection finds it at once, for 100 concurrent streams; their commits are grouped."""
    async with serving(**store_settings) as served:
        store = served.server.resources[0]
        assert isinstance(store, Store)
        commits: list[int] = []
        sa.event.listen(store.engine.sync_engine, "commit", lambda connection: commits.append(1))
        streams = orders_pb2_grpc.OrderServiceStub(served.channel)
        async with own_connection(served.address) as reads_channel:
            reads = orders_pb2_grpc.OrderServiceStub(reads_channel)
            missing: list[str] = []

            async def one(stream: int) -> int:
                ids = [f"s{stream}-{item}" for item in range(ITEMS)]
                received = 0
                call = streams.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
                async for result in call:
                    try:
                        found = await reads.GetOrder(orders_pb2.GetOrderRequest(order_id=result.order_id))
                    except grpc.aio.AioRpcError as error:
                        missing.append(f"{result.order_id}: {error.code().name}")
                    else:
                        assert found.order_id == result.order_id
                    received += 1
                return received

            received = await asyncio.gather(*(one(stream) for stream in range(STREAMS)))
        assert sum(received) == STREAMS * ITEMS
        assert missing == [], f"{len(missing)} delivered orders were not found on another connection"
        async with store.reader.connect() as connection:
            rows = (await connection.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()
        assert rows == STREAMS * ITEMS, "every delivered item's notification is in the outbox"
        # 1,000 units (one per item), and on SQLite the relay's records of what it published, which
        # ride in the streams' groups; grouped across the concurrent streams
        relay = served.server.resources[1]
        assert isinstance(relay, OutboxRelay)
        records = relay.records if store.embedded else 0
        assert store.committer.units_committed == STREAMS * ITEMS + records
        assert len(commits) <= STREAMS * ITEMS / 10, (
            f"{len(commits)} transactions for {STREAMS * ITEMS} items"
        )


class FailsFor(mediator.EventHandler[orders.OrderProcessedEvent]):
    """A second handler of the event, failing for order "bad" once the demo's handler (and the
    notification) staged their writes: it really suspends first."""

    async def handle(self, event: orders.OrderProcessedEvent) -> None:
        await asyncio.sleep(0.01)
        if event.order_id == "bad":
            raise RuntimeError("the audit refused 'bad'")


def app_with_failing_handler(settings: Settings) -> App:
    """The demo's OrderService, on a store of its own, with a handler that fails for one order."""
    store = Store.from_settings(settings.database_url, settings.state_dir, settings.store)
    assert store is not None
    handlers = Handlers()
    handlers.config.from_dict({"orders_kept": 100})
    handlers.order_book.override(StoredOrderBook(store))

    def events(mapper: typing.Any) -> None:
        orders.domain_events_mapper(mapper)
        mapper.bind(orders.OrderProcessedEvent, FailsFor)

    options: dict[str, typing.Any] = {
        "di_container": handlers,
        "commands_mapper": orders.commands_mapper,
        "domain_events_mapper": events,
        "message_broker": OutboxBroker(store),
        "unit_of_work": store.units,
    }
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=bootstrap.bootstrap_streaming(**options),
        unary=bootstrap.bootstrap(**options),
        rpcs=[
            Rpc("ProcessOrders", orders.ProcessOrdersCommand, orders.OrderProcessedResult),
            Rpc("GetOrder", orders.GetOrderQuery, orders.OrderView),
        ],
    )
    return App([binding], resources=[store])


async def test_a_failing_event_handler_keeps_nothing_of_its_item(
    store_settings: dict[str, typing.Any],
) -> None:
    async with serving(app_with_failing_handler, **store_settings) as served:
        store = served.server.resources[0]
        assert isinstance(store, Store)
        stub = orders_pb2_grpc.OrderServiceStub(served.channel)
        received: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for result in stub.ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=["a", "bad", "c"])
            ):
                received.append(result.order_id)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert received == ["a"]
        assert (await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))).order_id == "a"
        with pytest.raises(grpc.aio.AioRpcError) as not_found:
            await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="bad"))
        assert not_found.value.code() == grpc.StatusCode.NOT_FOUND, "the failed item's order was kept"
        async with store.reader.connect() as connection:
            topics = (await connection.execute(sa.select(outbox.c.payload))).scalars().all()
        assert [payload["order_id"] for payload in topics] == ["a"], "the failed item's notification was kept"


async def test_a_store_that_stays_locked_answers_unavailable_and_keeps_nothing(
    tmp_path: pathlib.Path,
) -> None:
    """Another process holds the SQLite write lock past the busy timeout: the item is not delivered,
    the client hears UNAVAILABLE (it may retry), and once the lock is gone the same call succeeds."""
    state_dir = tmp_path / "state"
    async with serving(database_url="", state_dir=state_dir, store={"sqlite_busy_timeout": 0.2}) as served:
        stub = orders_pb2_grpc.OrderServiceStub(served.channel)
        holder = sqlite3.connect(state_dir / "rill.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, as another worker mid-commit holds it
            received: list[str] = []
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for result in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a"])):
                    received.append(result.order_id)
            assert received == []
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert (raised.value.details() or "").startswith("state store unavailable")
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        results = [
            r.order_id async for r in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a"]))
        ]
        assert results == ["a"]
        assert (await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))).order_id == "a"
