"""The generic adapter with test handlers: incremental delivery, cancellation, deadlines, errors, drain."""

from __future__ import annotations

import asyncio
import datetime
import typing

import grpc
import pytest

import mediator
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.binding import Rpc, ServiceBinding
from server.calls import CallRegistry
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand


class Probe:
    """What the test handlers saw, and the gates that let a test drive them step by step."""

    def __init__(self) -> None:
        self.produced: list[str] = []
        self.handled: list[str] = []
        self.finally_ran = asyncio.Event()
        self.gates: dict[str, asyncio.Event] = {}
        self.failing: str | None = None

    def gate(self, order_id: str) -> asyncio.Event:
        return self.gates.setdefault(order_id, asyncio.Event())


PROBE: Probe


class Delivered(mediator.DomainEvent, frozen=True):
    order_id: str


class GatedOrdersHandler(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    """Waits for the test to open each order's gate (ids starting with 'g'), records its `finally`."""

    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        try:
            for order_id in request.order_ids:
                if order_id.startswith("g"):
                    await PROBE.gate(order_id).wait()
                if order_id == PROBE.failing:
                    raise RuntimeError("secret internal detail")
                PROBE.produced.append(order_id)
                self._events.append(Delivered(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id,
                    status="processed",
                    processed_at=datetime.datetime.now(datetime.UTC),
                    items_count=1,
                )
        finally:
            PROBE.finally_ran.set()


class DeliveredHandler(mediator.EventHandler[Delivered]):
    async def handle(self, event: Delivered) -> None:
        PROBE.handled.append(event.order_id)


class NoOrdersHandler(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        raise mediator.HandlerNotFound(type(request))


@pytest.fixture
async def probe() -> Probe:
    global PROBE
    PROBE = Probe()
    return PROBE


@pytest.fixture
async def adapter_server(probe: Probe) -> typing.AsyncIterator[tuple[grpc.aio.Server, str, CallRegistry]]:
    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(ProcessOrdersCommand, GatedOrdersHandler)
        mapper.bind(GetOrderQuery, NoOrdersHandler)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Delivered, DeliveredHandler)

    streaming = mediator.bootstrap.bootstrap_streaming(commands_mapper=commands, domain_events_mapper=events)
    unary = mediator.bootstrap.bootstrap(commands_mapper=commands)
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=streaming,
        unary=unary,
        rpcs=[
            Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
            Rpc("GetOrder", GetOrderQuery, OrderView),
        ],
    )
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


def stray_tasks(before: set[asyncio.Task[typing.Any]]) -> list[asyncio.Task[typing.Any]]:
    """Tasks started since ``before`` that are still running, other than grpc's own server loop."""
    return [task for task in asyncio.all_tasks() - before if not task.done() and "_cygrpc" not in repr(task)]


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def test_each_item_is_sent_as_soon_as_the_handler_yields_it(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    _, address, _ = adapter_server
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "g1", "b"))
        first = await call.read()
        assert first.order_id == "a"
        assert probe.produced == ["a"], "the handler is still held at g1, yet 'a' has arrived"
        probe.gate("g1").set()
        assert [(await call.read()).order_id, (await call.read()).order_id] == ["g1", "b"]
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_client_cancel_closes_the_handler_and_handles_delivered_events(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    _, address, calls = adapter_server
    before = asyncio.all_tasks()
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "b", "g-never", "c"))
        assert [(await call.read()).order_id for _ in range(2)] == ["a", "b"]
        call.cancel()
        await asyncio.wait_for(probe.finally_ran.wait(), timeout=10)
        assert await calls.wait_idle(10)
    assert probe.produced == ["a", "b"]
    assert probe.handled == ["a", "b"]
    assert calls.active == 0
    assert not stray_tasks(before)


async def test_deadline_shorter_than_the_stream_stops_the_handler(
    adapter_server: tuple[grpc.aio.Server, str, CallRegistry], probe: Probe
) -> None:
    _, address, calls = adapter_server
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "g-never"), timeout=0.5)
        assert (await call.read()).order_id == "a"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(probe.finally_ran.wait(), timeout=10)
        assert await calls.wait_idle(10)
    assert probe.handled == ["a"]


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
    assert "secret" not in raised.value.details()
    request_id = dict(raised.value.trailing_metadata())["x-request-id"]
    assert request_id in raised.value.details()
    logged = [r for r in caplog.records if r.levelname == "ERROR" and request_id in r.getMessage()]
    assert logged
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
        assert (await finishing.read()).order_id == "a"
        assert (await stuck.read()).order_id == "b"
        stopping = asyncio.create_task(server.stop(grace=3))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.ProcessOrders(request("late")).read()
        probe.gate("g-finish").set()
        assert (await finishing.read()).order_id == "g-finish"
        assert await finishing.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stuck.read()
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        await stopping
        assert await calls.wait_idle(10)
    assert sorted(probe.handled) == ["a", "b", "g-finish"]
