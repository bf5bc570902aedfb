"""The generic adapter with test handlers: incremental delivery, cancellation, deadlines, errors, drain."""

from __future__ import annotations

import asyncio
import typing

import grpc
import pytest

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.calls import CallRegistry
from tests.deadlines import parked_within
from tests.server.gated import Probe, fresh_probe, gated_binding, stray_tasks
from tests.typed_grpc import read


@pytest.fixture
async def probe() -> Probe:
    return fresh_probe()


@pytest.fixture
async def adapter_server(probe: Probe) -> typing.AsyncIterator[tuple[grpc.aio.Server, str, CallRegistry]]:
    binding = gated_binding()
    calls = CallRegistry()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(binding.name, binding.method_handlers(calls)),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}", calls
    finally:
        await server.stop(grace=0)


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def test_each_item_is_sent_as_soon_as_the_handler_yields_it(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    _, address, _ = adapter_server
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "g1", "b"))
        first = await read(call)
        assert first.order_id == "a"
        assert probe.produced == ["a"], "the handler is still held at g1, yet 'a' has arrived"
        probe.gate("g1").set()
        assert [(await read(call)).order_id, (await read(call)).order_id] == ["g1", "b"]
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_client_cancel_closes_the_handler_and_handles_delivered_events(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    _, address, calls = adapter_server
    before = asyncio.all_tasks()
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "b", "g-never", "c"))
        assert [(await read(call)).order_id for _ in range(2)] == ["a", "b"]
        call.cancel()
        await asyncio.wait_for(probe.finally_ran.wait(), timeout=10)
        assert await calls.wait_idle(10)
    assert probe.produced == ["a", "b"]
    assert probe.handled == ["a", "b"]
    assert calls.active == 0
    assert not stray_tasks(before)


async def test_deadline_shorter_than_the_stream_stops_the_handler(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry],
) -> None:
    _, address, calls = adapter_server

    async def attempt(deadline: float) -> bool:
        probe = fresh_probe()  # the handlers read the module's probe when they run
        async with grpc.aio.insecure_channel(address) as channel:
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                request("a", "g-never"), timeout=deadline
            )
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for result in call:
                    received.append(result.order_id)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert await calls.wait_idle(30)
        if "g-never" not in probe.gates:
            return False  # the deadline passed before the handler reached the gate: try a longer one
        # Parked at a gate nobody opens: only the deadline can have ended it.
        assert probe.finally_ran.is_set(), "the handler was closed when the deadline passed"
        assert received in ([], ["a"])
        assert probe.produced == ["a"]
        assert probe.handled == ["a"], "the events of the produced item were handled"
        return True

    await parked_within(attempt)


async def test_handler_error_after_items_is_internal_and_leaks_nothing(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    _, address, _ = adapter_server
    probe.failing = "boom"
    received = []
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "b", "boom", "c"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for result in call:
                received.append(result.order_id)
    assert received == ["a", "b"]
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    details = raised.value.details()
    assert details is not None
    assert "secret" not in details
    request_id = dict(raised.value.trailing_metadata())["x-request-id"]
    assert request_id in details
    logged = [r for r in caplog.records if r.levelname == "ERROR" and request_id in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert "secret internal detail" in str(logged[0].exc_info[1])


async def test_handler_not_found_maps_to_unimplemented(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry],
) -> None:
    _, address, _ = adapter_server
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await orders_pb2_grpc.OrderServiceStub(channel).GetOrder(orders_pb2.GetOrderRequest(order_id="x"))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_stop_gives_in_flight_streams_the_grace_period_then_ends_the_rest(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    server, address, calls = adapter_server
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        finishing = stub.ProcessOrders(request("a", "g-finish"))
        stuck = stub.ProcessOrders(request("b", "g-never"))
        assert (await read(finishing)).order_id == "a"
        assert (await read(stuck)).order_id == "b"
        stopping = asyncio.create_task(server.stop(grace=3))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ProcessOrders(request("late")).read()
        probe.gate("g-finish").set()
        assert (await read(finishing)).order_id == "g-finish"
        assert await finishing.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stuck.read()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        await stopping
        assert await calls.wait_idle(10)
    assert sorted(probe.handled) == ["a", "b", "g-finish"]
