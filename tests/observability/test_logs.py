"""Log lines: JSON, one per RPC end and per failed event-handler run, carrying the RPC's trace id."""

from __future__ import annotations

import io
import json
import logging
import typing

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.logs import CallContextFilter, JsonFormatter, configure_logging
from server.tracing import Tracing
from tests.connect.wire import envelope
from tests.observability.observed import ObservedServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> typing.Iterator[io.StringIO]:
    caplog.set_level(logging.INFO)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CallContextFilter())
    logging.getLogger().addHandler(handler)
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(handler)


async def test_rpc_ends_and_event_handler_failures_are_json_lines_with_the_trace_id(
    log_lines: io.StringIO,
) -> None:
    tracing = Tracing.with_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    async with (
        ObservedServer(tracing=tracing) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        metadata = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"), ("x-request-id", "req-7"))
        assert (
            len([r async for r in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a"]))]) == 1
        )
        with pytest.raises(grpc.aio.AioRpcError):
            [
                r
                async for r in stub.ProcessOrders(
                    orders_pb2.ProcessOrdersRequest(order_ids=["fail1"]), metadata=metadata
                )
            ]

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    ends = [line for line in lines if line["logger"] == "server.calls"]
    assert [(line["code"], line["items"]) for line in ends] == [("OK", 1), ("INTERNAL", 0)]
    assert all(line["method"] == "/orders.v1.OrderService/ProcessOrders" for line in ends)
    assert all(isinstance(line["duration"], float) and len(line["trace_id"]) == 32 for line in ends)
    assert ends[0]["trace_id"] != TRACE_ID
    assert ends[1]["trace_id"] == TRACE_ID
    assert ends[1]["request_id"] == "req-7"
    assert ends[1]["level"] == "ERROR"
    assert "RuntimeError: audit refused fail1" in ends[1]["exception"]
    [failure] = [line for line in lines if line["logger"] == "server.events"]
    assert failure["handler"] == "AuditHandler"
    assert failure["event"] == "Step"
    assert failure["outcome"] == "error"
    assert failure["trace_id"] == TRACE_ID
    assert failure["request_id"] == "req-7"


@pytest.mark.parametrize("transport", ["connect", "grpc-web", "sse"])
async def test_over_the_http_edge_an_event_handler_failure_logs_the_calls_request_id_and_trace_id(
    log_lines: io.StringIO, transport: str
) -> None:
    # The call is current in its event-handler runs whatever its transport (server.calls.CallScope).
    tracing = Tracing.with_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01", "x-request-id": "req-8"}
    async with (
        ObservedServer(tracing=tracing) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        if transport == "sse":
            await client.post("/v1/orders:process", json={"order_ids": ["fail1"]}, headers=headers)
        else:
            body = orders_pb2.ProcessOrdersRequest(order_ids=["fail1"]).SerializeToString()
            content_type = (
                "application/connect+proto" if transport == "connect" else "application/grpc-web+proto"
            )
            await client.post(
                "/orders.v1.OrderService/ProcessOrders",
                content=envelope(body),
                headers={**headers, "content-type": content_type},
            )

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [end] = [line for line in lines if line["logger"] == "server.calls"]
    assert (end["code"], end["request_id"], end["trace_id"]) == ("INTERNAL", "req-8", TRACE_ID)
    [failure] = [line for line in lines if line["logger"] == "server.events"]
    assert (failure["handler"], failure["outcome"]) == ("AuditHandler", "error")
    assert (failure["request_id"], failure["trace_id"]) == ("req-8", TRACE_ID)


def test_auto_format_is_json_off_a_terminal_and_text_on_one() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        for stream, is_json in ((io.StringIO(), True), (Terminal(), False)):
            configure_logging("WARNING", "auto", stream)
            logging.getLogger("server").warning("hello %s", "there")
            logging.getLogger("server").info("not at WARNING")
            [line] = stream.getvalue().splitlines()
            if is_json:
                assert json.loads(line)["message"] == "hello there"
            else:
                assert line.endswith("hello there")
                assert not line.startswith("{")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
