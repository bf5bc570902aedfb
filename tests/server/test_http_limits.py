"""The HTTP edge's limits, each tried as an attacker would, against the server as production builds it.

Stalled SSE readers, oversized bodies, silent and trickling connections, more connections than the
cap, bytes that are not HTTP, and the separate metrics port with TLS and a token. Small limits make
each one act at once; every wait is bounded generously, and the assertions are what the client got
and what the server did.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import pathlib
import socket
import ssl
import typing

import grpc
import httpx
import pydantic
import pytest
import trustme
from grpc_health.v1 import health_pb2

from server import RillServer, Settings, create_server
from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from server.http.limits import HttpLimitSettings
from server.limits import LimitSettings
from server.metrics import Metrics
from server.testing import serving as serving_app
from server.tls import TlsSettings
from tests.server.running import running_binding
from tests.typed_grpc import health_stub

ORDERS_HTTP = {
    "grpc_type": "server_stream",
    "grpc_service": "orders.v1.OrderService",
    "grpc_method": "ProcessOrders",
    "transport": "http",
}

Connection: typing.TypeAlias = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> typing.AsyncIterator[RillServer]:
    server = create_server(settings.model_copy(update={"http_address": "127.0.0.1:0"}))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


def http_port(server: RillServer) -> int:
    assert server.http is not None
    return server.http.port


async def connect(port: int, *, receive_buffer: int | None = None) -> Connection:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connecting, so that the TCP window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    # The reader stops taking from the socket at twice its limit: keep that small too.
    return await asyncio.open_connection(sock=sock, limit=receive_buffer or 1 << 20)


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: rill", "content-type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # the server may have reset it first
        await writer.wait_closed()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, typing.Any]]:
    """The status and JSON body of the one response the server sends before closing."""
    data = await asyncio.wait_for(reader.read(), timeout=30)  # to EOF: the server closed
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    status = int(head.split()[1])
    assert head.startswith(f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode())
    return status, json.loads(body)


def handled(server: RillServer, code: str) -> float:
    assert server.metrics is not None
    value = server.metrics.registry.get_sample_value(
        "grpc_server_handled_total", {**ORDERS_HTTP, "grpc_code": code}
    )
    return value or 0.0


async def test_an_sse_reader_that_stops_reading_ends_resource_exhausted() -> None:
    # An endless stream: the kernel takes megabytes of a stalled socket's writes before it blocks.
    metrics = Metrics()
    calls = CallRegistry(metrics=metrics, kinds={"/orders.v1.OrderService/ProcessOrders": "server_stream"})
    binding, record = running_binding(calls, endless=True)
    server = HttpServer(create_http_app([binding], calls, stall_timeout=0.5), "127.0.0.1:0")
    await server.start()
    try:
        reader, writer = await connect(server.port, receive_buffer=4096)
        body = json.dumps({"order_ids": ["a", "b", "c"]}).encode()
        writer.write(request_head("/v1/orders:process", f"content-length: {len(body)}") + body)
        await writer.drain()
        try:
            await asyncio.wait_for(reader.readuntil(b"event: start"), timeout=30)  # the call is on
            # From here the client reads nothing: the server's writes wait on the socket, then stall.
            await asyncio.wait_for(record.finally_ran.wait(), timeout=60)
            assert await calls.wait_idle(30)
            assert (
                metrics.registry.get_sample_value(
                    "grpc_server_handled_total", {**ORDERS_HTTP, "grpc_code": "RESOURCE_EXHAUSTED"}
                )
                == 1
            )
            assert record.in_flight_at_finally == 1
            assert record.handled == record.produced, "the events of every produced item were handled"
            # The server cut the connection at once, dropping its buffers, though the client has
            # still read nothing (nothing signals it: look, boundedly).
            for _ in range(3000):
                if server.connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert server.connections == 0
            # The client reads what its own buffers hold, then the end.
            with contextlib.suppress(ConnectionResetError):
                while await asyncio.wait_for(reader.read(1 << 16), timeout=30):
                    pass
        finally:
            await close(writer)
    finally:
        await server.stop(grace=0)


async def test_a_body_over_the_receive_limit_is_refused_413_before_it_is_read(
    server_settings: Settings,
) -> None:
    limit = 64 * 1024
    settings = server_settings.model_copy(update={"limits": LimitSettings(max_receive_message_bytes=limit)})
    async with serving(settings) as server:
        # Declared: 146 MB announced, one byte sent; the answer comes without the rest.
        reader, writer = await connect(http_port(server))
        writer.write(request_head("/v1/orders:process", "content-length: 146000000") + b"{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        length = next(
            int(h.split(b":")[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")
        )
        status, problem = int(head.split()[1]), json.loads(await reader.readexactly(length))
        # The rest of the body is dropped as it comes: a client still sending gets no reset.
        for _ in range(64):
            writer.write(b" " * 65536)
            await writer.drain()
        await close(writer)
        assert status == 413
        assert problem["code"] == "RESOURCE_EXHAUSTED"
        assert str(limit) in problem["message"]

        # Chunked (no length): read up to the limit only.
        assert server.http is not None
        async with httpx.AsyncClient(base_url=f"http://{server.http.address}", timeout=30) as client:

            async def chunks() -> typing.AsyncIterator[bytes]:
                yield b'{"order_ids": ["' + b"a" * limit + b'"]}'

            refused = await client.post("/v1/orders:process", content=chunks())
            assert refused.status_code == 413
            assert refused.json()["code"] == "RESOURCE_EXHAUSTED"
            within = await client.post("/v1/orders:process", json={"order_ids": ["a"] * 1000})
            assert within.status_code == 200
            assert within.text.count("event: progress") == 1000


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "server.http" and r.levelno == logging.WARNING
    ]


async def connections_closed(server: RillServer) -> bool:
    """Whether the edge's open connections drop to none (closing is seen on the loop's next turns)."""
    assert server.http is not None
    for _ in range(3000):
        if server.http.connections == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_silent_and_trickling_connections_are_closed_after_the_header_timeout(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    limits = HttpLimitSettings(header_timeout=0.5)
    async with serving(server_settings.model_copy(update={"http_limits": limits})) as server:
        silent = [await connect(http_port(server)) for _ in range(20)]
        partial = [await connect(http_port(server)) for _ in range(20)]
        for _, writer in partial:
            writer.write(b"POST /v1/orders:process HTTP/1.1\r\nhost: ri")
        for reader, writer in [*silent, *partial]:
            status, problem = await answer(reader)
            assert (status, problem["code"]) == (408, "DEADLINE_EXCEEDED")
            assert problem["message"] == "the request's headers did not arrive within 0.5 s"
            await close(writer)
        assert await connections_closed(server), "a timed-out connection is forgotten"
        # One line for the 40 (then at most one per 10 s, with a count): an attack does not flood the log.
        assert warnings_of(caplog) == [
            "HTTP: closed connections whose request headers took over 0.5 s (1 since the last report)"
        ]

        # One byte at a time: each byte does not buy it more time.
        reader, writer = await connect(http_port(server))

        async def until_closed() -> bytes:
            try:
                return await reader.read()
            except ConnectionResetError:  # a byte written after the server closed: a reset instead
                return b""

        closed = asyncio.create_task(until_closed())
        sent = 0
        try:
            writer.write(b"POST / HTTP/1.1\r\nx-padding: ")
            while not closed.done() and sent < 600:  # 600 bytes 20 ms apart: 12 s, far over 0.5 s
                writer.write(b"a")
                sent += 1
                await asyncio.wait([closed], timeout=0.02)
        finally:
            await close(writer)
            await closed
        assert sent < 600, "the trickling connection was closed"
        assert closed.result() == b"" or closed.result().startswith(b"HTTP/1.1 408 ")


async def test_a_body_that_does_not_arrive_is_closed_after_the_body_timeout(
    server_settings: Settings,
) -> None:
    limits = HttpLimitSettings(body_timeout=0.5)
    async with serving(server_settings.model_copy(update={"http_limits": limits})) as server:
        reader, writer = await connect(http_port(server))
        writer.write(request_head("/v1/orders:process", "content-length: 100") + b'{"order_ids": [')
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=30) == b"", "closed, nothing answered"
        await close(writer)
        assert server.calls.active == 0


async def test_connections_over_the_cap_are_refused_and_both_ports_keep_serving(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    limits = HttpLimitSettings(max_connections=10, header_timeout=60)
    async with serving(server_settings.model_copy(update={"http_limits": limits})) as server:
        held = [await connect(http_port(server)) for _ in range(10)]
        over = [await connect(http_port(server)) for _ in range(20)]
        for reader, writer in over:
            status, problem = await answer(reader)
            assert (status, problem["code"]) == (503, "UNAVAILABLE")
            assert problem["message"] == "too many connections; try again later"
            await close(writer)
        assert warnings_of(caplog) == [
            "HTTP: refused connections over http_limits.max_connections=10 (1 since the last report)"
        ]
        async with grpc.aio.insecure_channel(server.address) as channel:
            reply = await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        for _, writer in held:
            await close(writer)
        assert server.http is not None
        async with httpx.AsyncClient(base_url=f"http://{server.http.address}", timeout=30) as client:
            # The held connections are gone: a new one is served (closing is seen on the next turns).
            for _ in range(100):
                response = await client.get("/v1/orders/nothing")
                if response.status_code != 503:
                    break
            assert response.status_code == 404


async def test_bytes_that_are_not_http_get_the_documented_shape(server_settings: Settings) -> None:
    async with serving(server_settings) as server:
        reader, writer = await connect(http_port(server))
        writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, problem = await answer(reader)
        await close(writer)
    assert (status, problem["code"]) == (400, "INVALID_ARGUMENT")
    assert problem["message"].startswith("not a valid HTTP/1.1 request: ")


@pytest.fixture
def tls(tmp_path: pathlib.Path) -> tuple[TlsSettings, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(tmp_path / "server.pem"), append=True)
    return TlsSettings(cert_file=tmp_path / "server.pem", key_file=tmp_path / "server.key"), ca


async def test_the_metrics_port_follows_the_edges_tls_and_token(
    server_settings: Settings, tls: tuple[TlsSettings, trustme.CA], caplog: pytest.LogCaptureFixture
) -> None:
    tls_settings, ca = tls
    settings = server_settings.model_copy(
        update={
            "tls": tls_settings,
            "auth_token": pydantic.SecretStr("scrape-secret"),
            "metrics_address": "127.0.0.1:0",
        }
    )
    caplog.set_level(logging.INFO, logger="server.http")
    async with serving(settings) as server:
        assert server.metrics_http is not None
        port = server.metrics_http.port
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with httpx.AsyncClient(timeout=30) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/metrics")
        async with httpx.AsyncClient(verify=context, timeout=30) as client:
            url = f"https://localhost:{port}/metrics"
            assert (await client.get(url)).status_code == 401
            assert (await client.get(f"https://localhost:{port}/")).status_code == 401
            scraped = await client.get(url, headers={"authorization": "Bearer scrape-secret"})
            assert scraped.status_code == 200
            assert "grpc_server_started" in scraped.text
    logged = [record.getMessage() for record in caplog.records if record.name == "server.http"]
    assert f"serving metrics on https://127.0.0.1:{port}/" in logged
    assert any(line.startswith("serving HTTP on https://") for line in logged)


async def test_the_settings_stall_timeout_ends_a_stalled_sse_reader_of_the_real_server() -> None:
    # Built as production builds it (server.testing.serving -> create_server): the only way the
    # timeout reaches the SSE edge is the settings' limits.stall_timeout.
    binding, record = running_binding(CallRegistry(), endless=True)
    async with serving_app([binding], http=True, limits={"stall_timeout": 0.5}) as served:
        record.calls = served.server.calls  # so that the handler's finally sees the server's calls
        reader, writer = await connect(http_port(served.server), receive_buffer=4096)
        body = json.dumps({"order_ids": ["a", "b", "c"]}).encode()
        writer.write(request_head("/v1/orders:process", f"content-length: {len(body)}") + body)
        await writer.drain()
        try:
            await asyncio.wait_for(reader.readuntil(b"event: start"), timeout=30)
            # The client reads nothing more. Bounded as a hang guard: the kernel first takes a few
            # megabytes of the endless stream; unwired, the stream would never end.
            await asyncio.wait_for(record.finally_ran.wait(), timeout=60)
            assert await served.server.calls.wait_idle(30)
            assert handled(served.server, "RESOURCE_EXHAUSTED") == 1
            assert record.in_flight_at_finally == 1, "its finally ran while the call was counted"
            assert record.handled == record.produced, "the events of every produced item were handled"
        finally:
            await close(writer)
