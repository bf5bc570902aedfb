"""Faults: clients that cancel anywhere, a client that stops reading, event handlers that fail or hang.

The stall timeout is tested on the real service, built as production builds it (``create_server``).
(Deadlines, a handler that raises, and stop with a grace period are in tests/server/test_adapter.py;
SIGTERM with many streams in flight is in test_sigterm.py.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import typing

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mediator.message_brokers.memory import InMemoryMessageBroker
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import Settings, create_server
from server.limits import LimitSettings
from server.services.orders import MAX_ORDERS_PER_REQUEST
from tests.gated_broker import GatedBroker
from tests.reliability.counting import CountingServer
from tests.server.gated import stray_tasks
from tests.typed_grpc import health_stub, read

# A client that never grows its flow-control window past 64 KiB (grpc's default BDP probing grows it
# to megabytes): see bench/slow_client.py for both.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def _serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
    return response.status == health_pb2.HealthCheckResponse.SERVING


async def test_cancel_at_a_random_point_100_times_closes_every_handler_and_handles_every_event() -> None:
    rng = random.Random(5)
    before = asyncio.all_tasks()
    async with CountingServer() as served, grpc.aio.insecure_channel(served.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        received: list[str] = []

        async def cancel_after(stream: int, reads: int) -> None:
            call = stub.ProcessOrders(request(*(f"s{stream}-{i}" for i in range(20))))
            for _ in range(reads):
                received.append((await read(call)).order_id)
            call.cancel()

        plan = [rng.randrange(20) for _ in range(100)]  # each cancels after 0..19 of its 20 items
        for first in range(0, 100, 10):  # ten at a time
            await asyncio.gather(*(cancel_after(stream, plan[stream]) for stream in range(first, first + 10)))
        assert await served.calls.wait_idle(10)
        counts = served.counts
        # A call cancelled before its first item may be gone before its handler started.
        assert counts.started >= sum(reads > 0 for reads in plan)
        assert counts.finally_runs == counts.started, "every started handler's finally ran"
        assert len(counts.produced) == len(set(counts.produced))
        assert set(received) <= set(counts.produced)
        assert counts.handled == dict.fromkeys(counts.produced, 1), "every emitted event handled, once"
        assert served.calls.active == 0
    assert not stray_tasks(before)


# The service's stall timeout in the test below, and how long the test waits for it to act: a bound
# against a hang (and against a watch that fires many times too late), not a measurement.
STALL_TIMEOUT = 1.0
STALL_BOUND = 15.0


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics on", "metrics off"])
async def test_the_settings_stall_timeout_ends_a_stalled_stream_of_the_real_server(
    server_settings: Settings, broker: InMemoryMessageBroker, metrics: bool
) -> None:
    limits = LimitSettings(stall_timeout=STALL_TIMEOUT)
    settings = server_settings.model_copy(update={"limits": limits, "metrics": metrics})
    ids = [f"{index:0100d}" for index in range(MAX_ORDERS_PER_REQUEST)]  # ~1.4 MB of results: >> 64 KiB
    server = create_server(settings, broker=broker)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address, options=SMALL_WINDOW) as channel:
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            assert (await read(call)).order_id == ids[0]
            # The client reads no more. The server ends the stream and closes its handler; the status
            # itself waits behind the items already in the client's window.
            assert await server.calls.wait_idle(STALL_BOUND), "the stalled stream still holds its handler"
            processed = len(server.handlers.order_book())
            received = 1
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                while await call.read() is not grpc.aio.EOF:
                    received += 1
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "took no item" in (raised.value.details() or "")
        # Production stopped at about the client's window, for good, and every produced order's events
        # were handled (strict delivery: before the order was written).
        assert received <= processed < len(ids)
        assert len(server.handlers.order_book()) == processed
        assert server.handlers.order_analytics().per_category["electronics"] == processed
        assert len(broker.messages) == processed
        assert server.calls.active == 0
        if server.metrics is not None:  # the time the stream's writes waited for the client is counted
            labels = {
                "grpc_type": "server_stream",
                "grpc_service": "orders.v1.OrderService",
                "grpc_method": "ProcessOrders",
                "transport": "grpc",
            }
            waited = server.metrics.registry.get_sample_value("rill_server_client_wait_seconds_sum", labels)
            assert waited is not None
            assert waited > 0
    finally:
        await server.stop(grace=0)


async def test_a_slow_handler_is_not_a_stalled_client_and_the_watch_still_ends_a_later_stall(
    server_settings: Settings,
) -> None:
    # The first and the second item's notifications are each held for several stall timeouts (before
    # any write, and after one): the service is slow, the client is not, and the stream must live on.
    # Then the client stops reading: that stall ends it.
    ids = [f"{index:0100d}" for index in range(MAX_ORDERS_PER_REQUEST)]
    gates = {ids[0]: asyncio.Event(), ids[1]: asyncio.Event()}
    broker = GatedBroker(gates)
    settings = server_settings.model_copy(update={"limits": LimitSettings(stall_timeout=STALL_TIMEOUT)})
    server = create_server(settings, broker=broker)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address, options=SMALL_WINDOW) as channel:
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            for held in ids[:2]:
                await asyncio.wait_for(broker.parked_at[held].wait(), 30)
                # The scenario itself, not a synchronisation: the service takes longer than the timeout.
                await asyncio.sleep(3 * STALL_TIMEOUT)
                gates[held].set()
                assert (await read(call)).order_id == held, "the slow service's stream was not ended"
            assert await server.calls.wait_idle(STALL_BOUND), "the stalled client's stream was not ended"
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                while await call.read() is not grpc.aio.EOF:
                    pass
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(broker.messages) == len(server.handlers.order_book()) < len(ids)
    finally:
        await server.stop(grace=0)


async def test_a_client_cancel_is_counted_cancelled_not_as_a_stall(server_settings: Settings) -> None:
    # The stall watch is on (its default); a cancel that is not its own stays a cancel.
    ids = [f"{index:0100d}" for index in range(MAX_ORDERS_PER_REQUEST)]
    async with create_server(server_settings) as server, grpc.aio.insecure_channel(server.address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=ids)
        )
        assert (await read(call)).order_id == ids[0]
        call.cancel()
        assert await server.calls.wait_idle(30)
        assert server.metrics is not None
        labels = {
            "grpc_type": "server_stream",
            "grpc_service": "orders.v1.OrderService",
            "grpc_method": "ProcessOrders",
            "transport": "grpc",
        }
        handled = {
            code: server.metrics.registry.get_sample_value(
                "grpc_server_handled_total", {**labels, "grpc_code": code}
            )
            for code in ("CANCELLED", "RESOURCE_EXHAUSTED")
        }
        assert handled == {"CANCELLED": 1, "RESOURCE_EXHAUSTED": None}


async def test_an_event_handler_that_raises_ends_the_stream_internal_and_the_server_stays_healthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with CountingServer() as served, grpc.aio.insecure_channel(served.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for result in stub.ProcessOrders(request("a", "raise-b", "c")):
                received.append(result.order_id)
        assert received == ["a"], "strict delivery: the item whose events failed is not delivered"
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert "event processing failed" in (raised.value.details() or "")
        assert "raise-b" not in (raised.value.details() or ""), "no internals leak"
        assert await _serving(served.address)
        assert [r.order_id async for r in stub.ProcessOrders(request("d", "e"))] == ["d", "e"]
        assert served.counts.finally_runs == 2
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


async def test_a_hanging_event_handler_is_bounded_by_the_event_handler_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        CountingServer(event_handler_timeout=0.2) as served,
        grpc.aio.insecure_channel(served.address) as channel,
    ):
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for result in stub.ProcessOrders(request("a", "hang-b", "c")):
                received.append(result.order_id)
        assert received == ["a"]
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert served.counts.hang_cancelled.is_set(), "the hanging run was cancelled, not left behind"
        assert await _serving(served.address)
        assert [r.order_id async for r in stub.ProcessOrders(request("d"))] == ["d"]
    errors: list[typing.Any] = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert any("EventHandlerTimeout" in type(error).__name__ for error in errors)
