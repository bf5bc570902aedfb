"""Traces in the SDK's in-memory exporter: the RPC's server span continues the caller's trace, and each
event-handler run is a child span of it, tagged with the item that emitted its event."""

from __future__ import annotations

import typing

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.tracing import Tracing
from tests.observability.observed import ObservedServer

CALLER_SPAN = "00f067aa0ba902b7"


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{CALLER_SPAN}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing.with_processor(SimpleSpanProcessor(exporter))


def of_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.context is not None and format(span.context.trace_id, "032x") == trace_id
    ]


def server_span(spans: typing.Sequence[ReadableSpan]) -> ReadableSpan:
    [found] = [span for span in spans if span.kind == SpanKind.SERVER]
    return found


async def test_one_server_span_per_rpc_continuing_the_callers_trace_with_a_child_per_event_handler_run(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with (
        ObservedServer(tracing=tracing) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        call = stub.ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"]),
            metadata=(("traceparent", traceparent(trace_id)),),
        )
        assert len([r async for r in call]) == 2
        assert (
            len([r async for r in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["z"]))]) == 1
        )

    spans = of_trace(exporter, trace_id)
    rpc = server_span(spans)
    assert rpc.name == "orders.v1.OrderService/ProcessOrders"
    assert rpc.parent is not None
    assert format(rpc.parent.span_id, "016x") == CALLER_SPAN
    assert rpc.attributes is not None
    assert rpc.attributes["rpc.system"] == "grpc"
    assert rpc.attributes["rpc.method"] == "ProcessOrders"
    assert rpc.attributes["rpc.grpc.status_code"] == 0
    assert rpc.attributes["rill.items"] == 2
    assert rpc.status.status_code == StatusCode.UNSET
    runs = [span for span in spans if span is not rpc]
    assert rpc.context is not None
    assert all(run.parent is not None and run.parent.span_id == rpc.context.span_id for run in runs)
    assert sorted(
        (typing.cast(int, (run.attributes or {})["rill.item.index"]), run.name) for run in runs
    ) == [
        (0, "AuditHandler"),
        (0, "InMemoryMessageBroker"),
        (0, "StepHandler"),
        (1, "AuditHandler"),
        (1, "InMemoryMessageBroker"),
        (1, "StepHandler"),
    ]
    assert all(run.kind == SpanKind.INTERNAL and run.status.status_code == StatusCode.UNSET for run in runs)
    # The call without a traceparent got a trace of its own, with its own three runs.
    others = [span for span in exporter.get_finished_spans() if span not in spans]
    assert len(others) == 4
    assert server_span(others).parent is None


async def test_a_failing_event_handler_marks_its_span_and_the_rpcs_span_as_errors(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    async with (
        ObservedServer(tracing=tracing) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=["a", "fail1", "c"]),
            metadata=(("traceparent", traceparent(trace_id)),),
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [r async for r in call]
        assert raised.value.code() == grpc.StatusCode.INTERNAL

    spans = of_trace(exporter, trace_id)
    rpc = server_span(spans)
    assert rpc.status.status_code == StatusCode.ERROR
    assert (rpc.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    [failed] = [span for span in spans if span.status.status_code == StatusCode.ERROR and span is not rpc]
    assert failed.name == "AuditHandler"
    assert (failed.attributes or {})["rill.item.index"] == 1
    assert [event.name for event in failed.events] == ["exception"]
    assert "audit refused fail1" in str((failed.events[0].attributes or {})["exception.message"])
    assert len(spans) == 1 + 2 * 3  # items a and fail1: three runs each


async def test_the_http_edge_continues_the_callers_trace_too(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    trace_id = "5b8efff798038103d269b633813fc60c"
    async with ObservedServer(tracing=tracing) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/v1/orders:process", json={"order_ids": ["h"]}, headers={"traceparent": traceparent(trace_id)}
        )
        assert "event: complete" in response.text
    spans = of_trace(exporter, trace_id)
    rpc = server_span(spans)
    assert (rpc.attributes or {})["rill.transport"] == "http"
    assert sorted(span.name for span in spans if span is not rpc) == [
        "AuditHandler",
        "InMemoryMessageBroker",
        "StepHandler",
    ]
