"""Connect and gRPC-Web calls are traced as gRPC ones: the caller's trace continued, handlers as children."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from protos.orders.v1 import orders_pb2
from server import Settings, create_server
from server.tracing import Tracing
from tests.connect.conftest import PROCESS
from tests.connect.wire import envelope
from tests.observability.test_tracing import of_trace, server_span, traceparent


@pytest.mark.parametrize(
    ("content_type", "transport"),
    [("application/connect+proto", "connect"), ("application/grpc-web+proto", "grpc-web")],
)
async def test_the_call_continues_the_callers_trace(
    server_settings: Settings, content_type: str, transport: str
) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    settings = server_settings.model_copy(update={"http_address": "127.0.0.1:0"})
    async with create_server(settings, tracing=tracing) as server:
        assert server.http is not None
        async with httpx.AsyncClient(base_url=f"http://{server.http.address}", timeout=30) as client:
            body = envelope(orders_pb2.ProcessOrdersRequest(order_ids=["t"]).SerializeToString())
            response = await client.post(
                PROCESS,
                content=body,
                headers={"content-type": content_type, "traceparent": traceparent(trace_id)},
            )
            assert response.status_code == 200
    spans = of_trace(exporter, trace_id)
    rpc = server_span(spans)
    assert rpc.name == "orders.v1.OrderService/ProcessOrders"
    assert (rpc.attributes or {})["rill.transport"] == transport
    assert (rpc.attributes or {})["rill.items"] == 1
    children = [span for span in spans if span is not rpc]
    assert children, "the event-handler runs are children of the call's span"
    assert all(span.parent is not None and span.parent.span_id == rpc.context.span_id for span in children)
