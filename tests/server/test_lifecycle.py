"""The real server's lifecycle (``create_server``): start-up, graceful stop, the drain, the broker.

The service's own event handlers never suspend; its notifications do, in the broker. So the broker
here is one the test holds: each ``send_message`` parks until the test opens its gate (or for good),
which makes an event-handler run that is provably in flight when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import typing

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mediator import EventDelivery
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server
from server.apps import App
from server.demo import DemoApp
from server.settings import ServiceSettings
from server.tracing import Tracing
from tests.gated_broker import FailingBroker, GatedBroker, StubbornBroker
from tests.typed_grpc import health_stub, read

# How long a stop lets an event run of a cancelled stream finish (then cancels it): waited out in
# one test, never asserted.
DRAIN_TIMEOUT = 1.0


def orders_settings(settings: Settings, delivery: EventDelivery) -> Settings:
    service = ServiceSettings(event_delivery=delivery, drain_timeout=DRAIN_TIMEOUT)
    files = ServiceSettings(drain_timeout=DRAIN_TIMEOUT)
    return settings.model_copy(update={"orders": service, "files": files})


def process(channel: grpc.aio.Channel, *order_ids: str) -> typing.Any:
    return orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))
    )


async def serving(settings: Settings, broker: GatedBroker) -> RillServer:
    server = create_server(settings, broker=broker)
    await server.start()
    return server


async def test_stop_gives_an_in_flight_stream_the_grace_period_and_its_events_finish(
    server_settings: Settings,
) -> None:
    broker = GatedBroker()
    server = await serving(orders_settings(server_settings, EventDelivery.STRICT), broker)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest())
            assert (await read(watch)).status == health_pb2.HealthCheckResponse.SERVING
            call = process(channel, "a", "b")
            await asyncio.wait_for(broker.parked.wait(), 30)  # a's notification is in flight
            stopping = asyncio.create_task(server.stop(grace=60))  # 60 s: a hang guard, never reached
            assert (await read(watch)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # an open Watch is an in-flight call too: it would hold the stop for the grace
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await process(channel, "late").read()
            # Refused at the door or cancelled on arrival, as grpc's stop has it: never served.
            assert late.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            broker.gate.set()
            assert [result.order_id async for result in call] == ["a", "b"]
            assert await call.code() == grpc.StatusCode.OK
            await asyncio.wait_for(stopping, 60)
        assert broker.log == ["a sending", "a sent", "b sending", "b sent", "closed"]
        assert len(server.handlers.order_book()) == 2, "the late call processed nothing"
        assert server.calls.active == 0
    finally:
        await server.stop(grace=0)


async def test_stop_waits_for_the_drain_of_a_cancelled_stream_then_closes_the_broker(
    server_settings: Settings,
) -> None:
    # Overlapped delivery: "a" reaches the client while its notification is still being sent.
    broker = GatedBroker()  # its gate never opens: only the drain timeout ends the send
    server = await serving(orders_settings(server_settings, EventDelivery.OVERLAPPED), broker)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = process(channel, "a", "b")
            assert (await read(call)).order_id == "a"
            await asyncio.wait_for(broker.parked.wait(), 30)
            await server.stop(grace=0)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while await call.read() is not grpc.aio.EOF:  # "b" may have been on its way
                    pass
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        # When stop() returned, the cancelled stream had drained (its run cancelled after the drain
        # timeout) and only then was the broker closed.
        *runs, last = broker.log
        assert last == "closed"
        sending = sorted(entry.split()[0] for entry in runs if entry.endswith("sending"))
        cancelled = sorted(entry.split()[0] for entry in runs if entry.endswith("cancelled"))
        assert "a" in sending
        assert cancelled == sending
        assert server.calls.active == 0
        assert server.handlers.order_analytics().per_category["electronics"] >= 1
        assert server.handlers.order_book().get("a").order_id == "a", "a's other events were handled"
    finally:
        await server.stop(grace=0)


async def test_an_unreachable_broker_fails_the_start_up_before_anything_serves(
    server_settings: Settings,
) -> None:
    server = create_server(server_settings, broker=FailingBroker())
    with pytest.raises(ConnectionError, match="broker unreachable"):
        await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            # The port is bound but never served: the call waits in vain (5 s: a serving server
            # answers in milliseconds).
            await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    await server.stop(grace=0)


async def test_async_with_serves_then_stops_and_a_stopped_server_cannot_start_again(
    server_settings: Settings,
) -> None:
    broker = GatedBroker()
    broker.gate.set()
    server = create_server(server_settings, broker=broker)
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        assert [result.order_id async for result in process(channel, "a")] == ["a"]
        health = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert broker.log == ["a sending", "a sent", "closed"], "leaving the block stopped the server"
    async with grpc.aio.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    await server.stop(grace=0)  # a second stop does nothing
    assert broker.log.count("closed") == 1
    with pytest.raises(RuntimeError, match=r"^a stopped server cannot be started again; create a new one$"):
        await server.start()


async def test_the_values_in_force_are_logged_at_start_up_and_the_stop_is_logged(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    orders = ServiceSettings(
        max_concurrent_event_handlers=4, event_delivery=EventDelivery.OVERLAPPED, drain_timeout=2.5
    )
    server = create_server(server_settings.model_copy(update={"orders": orders}))
    async with server:
        pass
    lines = [record.getMessage() for record in caplog.records if record.name == "server"]
    assert lines == [
        f"serving orders.v1.OrderService, files.v1.FileService on {server.address}",
        "orders: max_concurrent_event_handlers=4 per_stream=2 delivery=overlapped handler_timeout=30.0"
        " drain=2.5s",
        "files: max_concurrent_event_handlers=10 per_stream=5 delivery=strict handler_timeout=30.0 drain=10s",
        "stopping: 0 calls in flight, 0 s grace",
        "stopped",
    ]


async def test_stop_exports_the_spans_still_buffered(server_settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    # A batch that would wait an hour: only the stop's flush can export it.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000, max_export_batch_size=512)
    server = create_server(server_settings, tracing=Tracing.with_processor(processor))
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        assert [result.order_id async for result in process(channel, "a")] == ["a"]
        assert exporter.get_finished_spans() == ()
    assert "orders.v1.OrderService/ProcessOrders" in [span.name for span in exporter.get_finished_spans()]


async def test_the_metrics_port_serves_until_the_stop(server_settings: Settings) -> None:
    server = create_server(server_settings.model_copy(update={"metrics_address": "127.0.0.1:0"}))
    async with server:
        assert server.metrics_http is not None
        url = f"http://{server.metrics_http.address}/metrics"
        async with httpx.AsyncClient(timeout=30) as client:
            assert "grpc_server_started_total" in (await client.get(url)).text
    async with httpx.AsyncClient(timeout=30) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)


async def test_a_run_that_will_not_stop_does_not_hold_the_stop_forever(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broker = StubbornBroker()
    settings = orders_settings(server_settings, EventDelivery.OVERLAPPED).model_copy(
        update={"drain_period": 2.0}
    )
    server = await serving(settings, broker)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = process(channel, "a")
            assert (await read(call)).order_id == "a"
            await asyncio.wait_for(broker.parked.wait(), 30)
            # The drain cancels the run after its drain_timeout; the run ignores that. When the
            # drain_period runs out the stop gives the drain up (the run is cancelled again, logged
            # and counted), says so, and closes the broker.
            await asyncio.wait_for(server.stop(grace=0), 60)
            assert server.calls.active == 0
            assert broker.log == ["a sending", "a ignores its cancellation", "closed"]
            errors = [r.getMessage() for r in caplog.records if r.name == "server" and r.levelname == "ERROR"]
            assert errors == ["1 calls were still finishing 2 s after the grace period; gave up 1 drains"]
            abandoned = [
                r.getMessage()
                for r in caplog.records
                if r.name == "mediator" and "was cancelled" in r.getMessage()
            ]
            assert any("OrderProcessedNotification" in line and "shutting down" in line for line in abandoned)
            assert server.mediators["orders"].events_abandoned >= 1
    finally:
        broker.gate.set()
        await server.stop(grace=0)


class _Resource:
    """An application's resource that records its start and close; ``fails`` makes its start fail."""

    def __init__(self, name: str, log: list[str], *, fails: bool = False) -> None:
        self.name, self.log, self.fails = name, log, fails

    async def start(self) -> None:
        await asyncio.sleep(0)  # a real one connects or migrates here
        if self.fails:
            raise ConnectionError(f"{self.name} unreachable")
        self.log.append(f"{self.name} started")

    async def aclose(self) -> None:
        self.log.append(f"{self.name} closed")


async def test_a_resource_that_fails_to_start_closes_the_ones_started_before_it(
    server_settings: Settings,
) -> None:
    log: list[str] = []
    app = App(
        bindings=DemoApp(server_settings, broker=GatedBroker()).bindings,
        resources=[_Resource("store", log), _Resource("relay", log, fails=True)],
    )
    rill = create_server(server_settings, services=app)
    with pytest.raises(ConnectionError, match=r"^relay unreachable$"):
        await rill.start()
    assert log == ["store started", "store closed"]
    await rill.stop(grace=0)


async def test_a_server_without_metrics_starts_serves_and_stops(server_settings: Settings) -> None:
    broker = GatedBroker()
    broker.gate.set()
    rill = create_server(server_settings.model_copy(update={"metrics": False}), broker=broker)
    assert rill.metrics is None
    async with rill, grpc.aio.insecure_channel(rill.address) as channel:
        assert [result.order_id async for result in process(channel, "a")] == ["a"]
    assert broker.log == ["a sending", "a sent", "closed"]
