"""The stall timeout on the edge: a Connect client that reads nothing is ended, as on the gRPC port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protos.orders.v1 import orders_pb2
from server.calls import CallRegistry
from server.connect import connect_edge
from server.http import HttpServer, create_http_app
from server.limits import LimitSettings
from server.metrics import Metrics, RpcLabels
from tests.connect.conftest import PROCESS
from tests.connect.wire import envelope
from tests.reliability import counting

TOTAL = 100_000


@pytest.mark.parametrize("content_type", ["application/connect+proto", "application/grpc-web+proto"])
async def test_a_client_that_reads_nothing_is_ended_after_the_stall_timeout(content_type: str) -> None:
    counting.COUNTS = counts = counting.Counts()
    binding = counting.counting_binding()
    calls = CallRegistry(metrics=Metrics())
    app = connect_edge(
        create_http_app([binding], calls), [binding], calls, limits=LimitSettings(stall_timeout=0.3)
    )
    server = HttpServer(app, "127.0.0.1:0")
    await server.start()
    loop = asyncio.get_running_loop()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server stalls
    client.setblocking(False)
    try:
        await loop.sock_connect(client, ("127.0.0.1", server.port))
        body = envelope(orders_pb2.ProcessOrdersRequest(order_ids=[f"n{TOTAL}"]).SerializeToString())
        head = (
            f"POST {PROCESS} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        await loop.sock_sendall(client, head.encode() + body)
        assert (await loop.sock_recv(client, 1024)).startswith(b"HTTP/1.1 200")
        # Then the client reads nothing: the server's handler is closed after the stall timeout.
        await asyncio.wait_for(counts.finally_ran.wait(), timeout=60)
        assert len(counts.produced) < TOTAL
        assert await calls.wait_idle(10)
        series = (
            calls.metrics.series(
                RpcLabels(
                    "server_stream",
                    "orders.v1.OrderService",
                    "ProcessOrders",
                    "connect" if "connect" in content_type else "grpc-web",
                )
            )
            if calls.metrics
            else None
        )
        assert series is not None
        assert dict(series.handled) == {"RESOURCE_EXHAUSTED": 1}
        assert counts.handled == dict.fromkeys(counts.produced, 1), "delivered items' events handled"
        # And the connection is closed: what is buffered, then the end.
        while await asyncio.wait_for(loop.sock_recv(client, 1 << 16), timeout=30):
            pass
    finally:
        client.close()
        await server.stop(grace=0)
