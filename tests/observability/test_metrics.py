"""/metrics scraped from real servers after real streams: gRPC series, the mediators', the broker's."""

from __future__ import annotations

import asyncio
import typing

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import Settings, create_server
from tests.observability.observed import ObservedServer, gate
from tests.typed_grpc import read

Samples: typing.TypeAlias = list[tuple[str, dict[str, str], float]]

ORDERS = {"grpc_service": "orders.v1.OrderService", "grpc_method": "ProcessOrders"}


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    matching = [v for n, lbls, v in samples if n == name and labels.items() <= lbls.items()]
    assert matching, f"no sample {name} with {labels}"
    return sum(matching)


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def test_counters_and_labels_after_ok_invalid_failing_cancelled_and_http_streams() -> None:
    async with ObservedServer() as server, grpc.aio.insecure_channel(server.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        assert [r.order_id async for r in stub.ProcessOrders(request("a", "b"))] == ["a", "b"]

        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            [r async for r in stub.ProcessOrders(request())]
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        failing = stub.ProcessOrders(request("a", "fail1", "c"))
        assert (await read(failing)).order_id == "a"
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await failing.read()
        assert failed.value.code() == grpc.StatusCode.INTERNAL

        cancelled = stub.ProcessOrders(request("x", "g-never"))
        assert (await read(cancelled)).order_id == "x"
        cancelled.cancel()
        for _ in range(200):
            if server.calls.active == 0:
                break
            await asyncio.sleep(0.01)

        async with httpx.AsyncClient(base_url=server.url) as client:
            ok = await client.post("/v1/orders:process", json={"order_ids": ["h"]})
            assert "event: complete" in ok.text
            refused = await client.post("/v1/orders:process", json={"order_ids": []})
            assert refused.status_code == 422

        samples = await scrape(server.url)

    grpc_stream = {**ORDERS, "grpc_type": "server_stream", "transport": "grpc"}
    assert value(samples, "grpc_server_started_total", **grpc_stream) == 4
    assert value(samples, "grpc_server_msg_received_total", **grpc_stream) == 4
    for code in ("OK", "INVALID_ARGUMENT", "INTERNAL", "CANCELLED"):
        assert value(samples, "grpc_server_handled_total", **grpc_stream, grpc_code=code) == 1, code
    assert value(samples, "grpc_server_msg_sent_total", **grpc_stream) == 2 + 1 + 1
    assert value(samples, "grpc_server_handling_seconds_count", **grpc_stream) == 4
    assert value(samples, "grpc_server_handling_seconds_bucket", **grpc_stream, le="+Inf") == 4
    assert value(samples, "rill_server_first_message_seconds_count", **grpc_stream) == 3  # had an item
    assert value(samples, "rill_server_client_wait_seconds_count", **grpc_stream) == 4
    assert value(samples, "rill_server_in_flight", **grpc_stream) == 0

    http = {**ORDERS, "transport": "http"}
    assert value(samples, "grpc_server_started_total", **http) == 2
    assert value(samples, "grpc_server_handled_total", **http, grpc_code="OK") == 1
    assert value(samples, "grpc_server_handled_total", **http, grpc_code="INVALID_ARGUMENT") == 1
    assert value(samples, "grpc_server_msg_sent_total", **http) == 1

    orders = {"mediator": "orders"}
    # Delivered: a, b (ok), a (failing), x (cancelled), h (HTTP). fail1's events ran; it was not delivered.
    assert value(samples, "rill_mediator_items_total", **orders, request="ProcessOrdersCommand") == 5
    assert value(samples, "rill_mediator_events_emitted_total", **orders, event="Step") == 6
    assert value(samples, "rill_mediator_events_emitted_total", **orders, event="Note") == 6
    assert value(samples, "rill_event_handler_runs_total", **orders, handler="StepHandler", outcome="ok") == 6
    assert (
        value(samples, "rill_event_handler_runs_total", **orders, handler="AuditHandler", outcome="ok") == 5
    )
    assert (
        value(samples, "rill_event_handler_runs_total", **orders, handler="AuditHandler", outcome="error")
        == 1
    )
    assert value(samples, "rill_event_handler_seconds_count", **orders, handler="AuditHandler") == 6
    assert value(samples, "rill_mediator_strict_wait_seconds_count", **orders) >= 1  # StepHandler suspends
    assert value(samples, "rill_event_handlers_in_flight", **orders) == 0
    assert value(samples, "rill_event_handlers_limit", **orders) == 10
    broker = {"broker": "InMemoryMessageBroker"}
    assert value(samples, "rill_broker_notifications_total", **broker, outcome="published") == 6
    assert value(samples, "rill_broker_notifications_total", **broker, outcome="failed") == 0


async def test_a_stream_in_flight_is_a_gauge_of_one() -> None:
    async with ObservedServer() as server, grpc.aio.insecure_channel(server.address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request("a", "g1"))
        assert (await read(call)).order_id == "a"
        samples = await scrape(server.url)
        assert value(samples, "rill_server_in_flight", **ORDERS, transport="grpc") == 1
        gate("g1").set()
        assert (await read(call)).order_id == "g1"
        assert await call.code() == grpc.StatusCode.OK


async def test_the_service_serves_metrics_on_its_http_edge_and_on_a_metrics_address(
    server_settings: Settings,
) -> None:
    settings = server_settings.model_copy(
        update={"http_address": "127.0.0.1:0", "metrics_address": "127.0.0.1:0"}
    )
    server = create_server(settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            assert len([r async for r in stub.ProcessOrders(request("a", "b", "c"))]) == 3
            await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))
        assert server.http is not None
        assert server.metrics_http is not None
        on_edge = await scrape(f"http://{server.http.address}")
        on_its_own = await scrape(f"http://{server.metrics_http.address}")
    finally:
        await server.stop(grace=0)
    for samples in (on_edge, on_its_own):
        assert value(samples, "grpc_server_handled_total", **ORDERS, grpc_code="OK") == 1
        assert value(samples, "grpc_server_msg_sent_total", **ORDERS) == 3
        assert (
            value(
                samples,
                "grpc_server_handled_total",
                grpc_method="GetOrder",
                grpc_type="unary",
                grpc_code="OK",
            )
            == 1
        )
        assert value(samples, "rill_event_handler_runs_total", handler="OrderProcessedEventHandler") == 3
        assert value(samples, "rill_broker_notifications_total", outcome="published") == 3
        assert value(samples, "rill_event_handlers_limit", mediator="files") == 10


async def test_two_servers_in_one_process_keep_their_own_series() -> None:
    async with ObservedServer() as first, ObservedServer() as second:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            assert len([r async for r in stub.ProcessOrders(request("a"))]) == 1
        assert value(await scrape(first.url), "grpc_server_started_total", **ORDERS) == 1
        assert not [s for s in await scrape(second.url) if s[0] == "grpc_server_started_total"]
