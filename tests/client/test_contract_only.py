"""The client depends on the contract only, and calls any RPC of any service given its generated classes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import grpc
import pytest

from client import (
    NO_RETRY,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    RillClient,
)
from protos.orders.v1 import orders_pb2
from server import RillServer
from tests.client.conftest import FAST_RETRY, ROOT, FakeServers
from tests.client.fakes import FakeOrderService, fail, hang_after, stream

ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
PROCESS_ORDERS = ORDERS.methods_by_name["ProcessOrders"]
GET_ORDER = ORDERS.methods_by_name["GetOrder"]

# What `import client` must not load: the server, the mediator, and the server's heavy dependencies
# (the command line's typer and rich too: they come with the `cli` extra, not with the library).
FORBIDDEN = ("server", "mediator", "fastapi", "uvicorn", "starlette", "opentelemetry.sdk", "typer", "rich")


def test_import_client_loads_neither_server_nor_mediator_nor_their_dependencies() -> None:
    probe = "import client, json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout)
    assert "client" in loaded
    assert "rill_wire" in loaded  # the wire constants both sides share
    assert [name for name in loaded if name.split(".")[0] in FORBIDDEN or name.startswith(FORBIDDEN)] == []


async def test_a_generic_stream_calls_any_server_streaming_rpc_by_path_or_descriptor(
    rill_server: RillServer,
) -> None:
    request = orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"])
    async with RillClient(rill_server.address, timeout=30) as client:
        async with client.stream(PROCESS_ORDERS, request, orders_pb2.OrderProcessedResult) as results:
            by_descriptor = [result async for result in results]
        path = "/orders.v1.OrderService/ProcessOrders"
        async with client.stream(path, request, orders_pb2.OrderProcessedResult) as results:
            by_path = [result async for result in results]
        order = await client.call(GET_ORDER, orders_pb2.GetOrderRequest(order_id="a"), orders_pb2.Order)

    assert [type(result) for result in by_descriptor] == [orders_pb2.OrderProcessedResult] * 2
    assert (
        [result.order_id for result in by_descriptor] == [result.order_id for result in by_path] == ["a", "b"]
    )
    assert by_descriptor[0].HasField("processed_at")
    assert (type(order), order.order_id, order.customer_id) == (orders_pb2.Order, "a", "customer_a")


async def test_generic_calls_raise_the_same_errors_as_the_typed_methods(rill_server: RillServer) -> None:
    async with RillClient(rill_server.address, timeout=30) as client:
        with pytest.raises(InvalidArgument) as invalid:
            async with client.stream(
                PROCESS_ORDERS, orders_pb2.ProcessOrdersRequest(), orders_pb2.OrderProcessedResult
            ) as results:
                async for _ in results:
                    pass
        with pytest.raises(NotFound) as not_found:
            await client.call(GET_ORDER, orders_pb2.GetOrderRequest(order_id="never"), orders_pb2.Order)

    assert [violation.field for violation in invalid.value.violations] == ["order_ids"]
    assert not_found.value.request_id


async def test_generic_calls_have_the_typed_methods_metadata_retries_and_deadlines(
    fake_servers: FakeServers,
) -> None:
    unavailable = fail(grpc.StatusCode.UNAVAILABLE)
    fake = FakeOrderService(unavailable, stream(2), unavailable, stream(0))
    address = await fake_servers.start(fake)
    request = orders_pb2.ProcessOrdersRequest(order_ids=["a"])
    async with RillClient(
        address, token="s3cret", metadata=[("x-tenant", "acme")], retry=FAST_RETRY
    ) as client:
        results = client.stream(
            PROCESS_ORDERS,
            request,
            orders_pb2.OrderProcessedResult,
            metadata=[("x-trace", "t1")],
            request_id="r-1",
        )
        async with results:
            assert len([result async for result in results]) == 2
        order = await client.call(GET_ORDER, orders_pb2.GetOrderRequest(order_id="a"), orders_pb2.Order)

    assert results.attempts == 2
    assert order.order_id == "a"
    assert [call.outcome for call in fake.calls] == ["UNAVAILABLE", "ok", "UNAVAILABLE", "ok"]
    first = fake.calls[0].metadata
    assert (first["authorization"], first["x-tenant"], first["x-trace"]) == ("Bearer s3cret", "acme", "t1")
    assert [call.metadata["x-request-id"] for call in fake.calls[:2]] == ["r-1", "r-1"]

    hanging = FakeOrderService(hang_after(0))
    async with RillClient(await fake_servers.start(hanging), retry=NO_RETRY) as client:
        with pytest.raises(DeadlineExceeded):
            async with client.stream(
                PROCESS_ORDERS, request, orders_pb2.OrderProcessedResult, timeout=0.2
            ) as results:
                async for _ in results:
                    pass
    await asyncio.wait_for(hanging.cancelled.wait(), 10)


async def test_a_descriptor_that_does_not_fit_the_classes_or_the_call_is_refused_before_calling() -> None:
    async with RillClient("127.0.0.1:1", retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(ValueError, match="use call"):
            client.stream(GET_ORDER, orders_pb2.GetOrderRequest(), orders_pb2.Order)
        with pytest.raises(ValueError, match="use stream"):
            await client.call(
                PROCESS_ORDERS, orders_pb2.ProcessOrdersRequest(), orders_pb2.OrderProcessedResult
            )
        with pytest.raises(TypeError, match=r"takes orders\.v1\.ProcessOrdersRequest"):
            client.stream(PROCESS_ORDERS, orders_pb2.GetOrderRequest(), orders_pb2.OrderProcessedResult)
        with pytest.raises(ValueError, match="expected an RPC path"):
            client.stream("ProcessOrders", orders_pb2.ProcessOrdersRequest(), orders_pb2.OrderProcessedResult)
