"""The HTTP edge under a client that misbehaves: leaves mid-stream, hogs the loop, sends bad bytes.

Real uvicorn on a free port in this loop, raw sockets or httpx as the client; every assertion is
about what the server did (handler stopped, its ``finally`` ran in the call, the answer's shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from server import RillServer
from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from tests.server.running import Record, running_binding
from tests.typed_grpc import health_stub

IDS = [f"o{i}" for i in range(10_000)]


async def post_raw(
    address: str, path: str, body: bytes, *headers: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"host: {address}", "content-type: application/json"]
    head += [f"content-length: {len(body)}", *headers]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    return reader, writer


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):  # the server may have reset it first
        await writer.wait_closed()


@pytest.fixture(params=[False, True], ids=["never-suspends", "suspends-per-item"])
async def running_edge(
    request: pytest.FixtureRequest,
) -> typing.AsyncIterator[tuple[str, Record, CallRegistry]]:
    calls = CallRegistry()
    binding, record = running_binding(calls, suspend=request.param)
    server = HttpServer(create_http_app([binding], calls), "127.0.0.1:0")
    await server.start()
    try:
        yield server.address, record, calls
    finally:
        await server.stop(grace=0)


async def test_a_client_that_leaves_between_items_stops_the_handler_within_a_few_items(
    running_edge: tuple[str, Record, CallRegistry],
) -> None:
    address, record, calls = running_edge
    reader, writer = await post_raw(address, "/v1/orders:process", json.dumps({"order_ids": IDS}).encode())
    await asyncio.wait_for(reader.readuntil(b"event: progress"), timeout=30)
    produced_when_left = record.produced
    await close(writer)

    await asyncio.wait_for(record.finally_ran.wait(), timeout=30)
    assert await calls.wait_idle(30)
    assert record.produced < len(IDS), "the handler was stopped, not run to its end"
    assert record.produced - produced_when_left <= 20, "it stopped within a few items of the disconnect"
    assert record.in_flight_at_finally == 1, "its finally ran while the call was still being served"
    assert record.finally_in is record.started_in, "in the task that served the request, not a collector"
    assert record.handled == record.produced, "the events of every produced item were handled"


async def test_health_checks_are_answered_while_sse_streams_run(http_service: RillServer) -> None:
    assert http_service.http is not None
    base = f"http://{http_service.http.address}"

    def read_all() -> int:
        # In a thread of its own: a reader that drains its socket whatever this loop is doing, as
        # a client in another process does (one in this loop would let a monopolising stream
        # fill its socket buffer and so suspend).
        with (
            httpx.Client(base_url=base, timeout=120) as client,
            client.stream("POST", "/v1/orders:process", json={"order_ids": IDS}) as response,
        ):
            return sum(line == "event: progress" for line in response.iter_lines())

    async with grpc.aio.insecure_channel(http_service.address) as channel:
        health = health_stub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), timeout=30)  # connected before the load
        readers = [asyncio.create_task(asyncio.to_thread(read_all)) for _ in range(4)]
        answered = under_load = 0
        checks = 20
        try:
            for _ in range(checks):
                under_load += not all(task.done() for task in readers)
                # Idle, a check answers in ~2 ms: two seconds is a generous multiple (a busy CI
                # machine), and no stream may hold the loop for that long (one took ~4 s).
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
                answered += reply.status == health_pb2.HealthCheckResponse.SERVING
                await asyncio.sleep(0.05)
            progress = await asyncio.gather(*readers)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    assert answered == checks
    assert under_load >= checks // 2, "the checks ran while the streams did"
    assert progress == [len(IDS)] * 4


@pytest.fixture
async def http(http_service: RillServer) -> typing.AsyncIterator[httpx.AsyncClient]:
    assert http_service.http is not None
    async with httpx.AsyncClient(base_url=f"http://{http_service.http.address}", timeout=30) as client:
        yield client


def assert_documented_shape(response: httpx.Response, code: str) -> None:
    assert response.headers["content-type"] == "application/json"
    problem = response.json()
    assert "detail" not in problem
    assert problem["code"] == code
    assert isinstance(problem["message"], str)


@pytest.mark.parametrize(
    "body",
    [b'{"order_ids": ["\xff\xfe"]}', b"[" * 100_000 + b"]" * 100_000],
    ids=["invalid-utf8", "100k-deep"],
)
async def test_bodies_that_cannot_be_parsed_answer_the_documented_shape(
    http: httpx.AsyncClient, body: bytes
) -> None:
    response = await http.post(
        "/v1/orders:process", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert_documented_shape(response, "INVALID_ARGUMENT")
    assert [v["field"] for v in response.json()["field_violations"]] == ["request"]


async def test_refusals_by_the_router_answer_the_documented_shape(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert_documented_shape(missing, "NOT_FOUND")
    wrong_method = await http.delete("/v1/orders:process")
    assert wrong_method.status_code == 405
    assert_documented_shape(wrong_method, "UNIMPLEMENTED")
