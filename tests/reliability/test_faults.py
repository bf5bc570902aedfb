"""Faults: clients that cancel anywhere, a client that stops reading, event handlers that fail or hang.

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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.reliability.counting import CountingServer
from tests.server.gated import stray_tasks

# A client that never grows its flow-control window past 64 KiB (grpc's default BDP probing grows it
# to megabytes): see bench/slow_client.py for both.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def _serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
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
                received.append((await call.read()).order_id)
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


async def test_a_client_that_stops_reading_is_ended_after_the_stall_timeout() -> None:
    total = 100_000
    async with (
        CountingServer(stall_timeout=0.3) as served,
        grpc.aio.insecure_channel(served.address, options=SMALL_WINDOW) as channel,
    ):
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request(f"n{total}"))
        assert (await call.read()).order_id == f"n{total}-0"
        # The server closes the handler; the status waits behind the items the client has not read.
        await asyncio.wait_for(served.counts.finally_ran.wait(), timeout=30)
        produced = len(served.counts.produced)
        received = 1
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            while await call.read() is not grpc.aio.EOF:
                received += 1
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "took no item" in (raised.value.details() or "")
    # The handler ran ahead of the reader by the client's window only, then stopped for good.
    assert produced < total
    assert received <= produced
    assert await served.calls.wait_idle(10)
    assert served.counts.handled == dict.fromkeys(served.counts.produced, 1)


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
