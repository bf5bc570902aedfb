"""Bounded by default (issue 15): what a client cannot take, whatever it sends, and what the service
keeps in memory however long it runs. Attacks are sent as raw HTTP/2 frames (:mod:`raw_h2`).
"""

from __future__ import annotations

import asyncio
import logging
import typing

import grpc
import h2.events
import pytest
from grpc_health.v1 import health_pb2

from mediator.message_brokers.memory import DEFAULT_CAPACITY, InMemoryMessageBroker
from protos.files.v1 import files_pb2, files_pb2_grpc
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server
from server.brokers import broker_from_url
from server.logs import GRPC_CYGRPC_LOGGER, GrpcDecodeErrorFilter, RateLimit
from tests.reliability.raw_h2 import RawH2
from tests.typed_grpc import health_stub

PROCESS_ORDERS = "/orders.v1.OrderService/ProcessOrders"
GET_ORDER = "/orders.v1.OrderService/GetOrder"


def with_limits(settings: Settings, **limits: typing.Any) -> Settings:
    return settings.model_copy(update={"limits": settings.limits.model_copy(update=limits)})


@pytest.fixture
async def started(
    request: pytest.FixtureRequest, server_settings: Settings
) -> typing.AsyncIterator[RillServer]:
    """The service with the limits a test gives as its indirect parameter (none: the defaults)."""
    server = create_server(with_limits(server_settings, **getattr(request, "param", {})))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


async def process_orders(channel: grpc.aio.Channel, ids: list[str]) -> list[str]:
    call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=ids)
    )
    return [result.order_id async for result in call]


def test_the_defaults_are_bounds() -> None:
    limits = Settings().limits
    assert limits.max_concurrent_streams == 100
    assert limits.max_concurrent_rpcs == 2_000
    assert limits.request_timeout == 30.0
    assert (limits.orders_kept, limits.files_kept) == (10_000, 10_000)
    options = dict(limits.grpc_options())
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.so_reuseport"] == 0, "only --workers share a port"
    assert dict(limits.grpc_options(reuse_port=True))["grpc.so_reuseport"] == 1
    memory = broker_from_url("memory")
    assert isinstance(memory, InMemoryMessageBroker)
    assert memory.capacity == DEFAULT_CAPACITY


@pytest.mark.parametrize("started", [{"request_timeout": 1.0}], indirect=True)
async def test_streams_that_never_send_their_request_are_bounded_per_connection_and_ended(
    started: RillServer, caplog: pytest.LogCaptureFixture
) -> None:
    # 150 HEADERS without their message, on one connection, sent before the server's SETTINGS are read.
    raw = await RawH2.connect(started.address)
    try:
        streams = [raw.open_stream(PROCESS_ORDERS) for _ in range(150)]
        await raw.flush()
        await raw.read_until(lambda r: set(streams) <= set(r.ended()), timeout=30)
    finally:
        await raw.aclose()
    assert raw.max_concurrent_streams == 100
    answered = [raw.grpc_status(stream) for stream in streams]
    timed_out = (grpc.StatusCode.DEADLINE_EXCEEDED.value[0], "the request message did not arrive within 1 s")
    assert answered.count(timed_out) == 100, "the streams within the limit end once the timeout passes"
    refused = [stream for stream, status in zip(streams, answered, strict=True) if status is None]
    assert len(refused) == 50
    assert all(isinstance(raw.ended()[stream], h2.events.StreamReset) for stream in refused)
    warnings = [r for r in caplog.records if r.name == "server.admission" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one line, not one per stream"
    assert "sent no request message within 1 s" in warnings[0].getMessage()
    # The server is none the worse: it serves at once.
    async with grpc.aio.insecure_channel(started.address) as channel:
        assert await process_orders(channel, ["a", "b"]) == ["a", "b"]
    assert started.admission.in_flight == 0


@pytest.mark.parametrize("started", [{"max_concurrent_streams": 10}], indirect=True)
async def test_a_client_with_more_streams_than_the_connection_limit_gets_them_all(
    started: RillServer,
) -> None:
    # A grpc client queues the streams beyond the server's SETTINGS; with grpc's "overload protection"
    # the server also refused streams that had ended but were not yet freed: UNAVAILABLE, 0 items.
    ids = [f"o{index}" for index in range(20)]
    async with grpc.aio.insecure_channel(started.address) as channel:
        results = await asyncio.gather(*(process_orders(channel, ids) for _ in range(200)))
    assert results == [ids] * 200


async def test_a_request_stream_ended_without_its_message_is_invalid_argument(started: RillServer) -> None:
    raw = await RawH2.connect(started.address)
    try:
        stream = raw.open_stream(GET_ORDER, body=None)
        raw.end_stream(stream)
        await raw.flush()
        await raw.read_until(lambda r: r.grpc_status(stream) is not None, timeout=30)
    finally:
        await raw.aclose()
    assert raw.grpc_status(stream) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "invalid request: request: no request message was sent",
    )


@pytest.mark.parametrize("started", [{"max_concurrent_rpcs": 5}], indirect=True)
async def test_calls_beyond_max_concurrent_rpcs_are_refused_at_once_with_a_log_line(
    started: RillServer, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await RawH2.connect(started.address)
    try:
        # Five calls waiting for their request hold the five places; the sixth (complete) is refused.
        held = [raw.open_stream(PROCESS_ORDERS) for _ in range(5)]
        body = orders_pb2.ProcessOrdersRequest(order_ids=["a"]).SerializeToString()
        sixth = raw.open_stream(PROCESS_ORDERS, body=body)
        await raw.flush()
        await raw.read_until(lambda r: r.grpc_status(sixth) is not None, timeout=30)
        assert raw.grpc_status(sixth) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            "the server has 5 calls in flight: retry later",
        )
        assert not set(held) & set(raw.ended()), "the five are still in flight"
        async with grpc.aio.insecure_channel(started.address) as channel:
            health = health_stub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health.Check(health_pb2.HealthCheckRequest())
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await raw.aclose()
    [line] = [r for r in caplog.records if r.name == "server.admission"]
    assert line.levelno == logging.WARNING
    assert "refused RESOURCE_EXHAUSTED: 5 calls in flight (limits.max_concurrent_rpcs)" in line.getMessage()


async def test_a_metadata_value_that_is_not_utf8_is_one_short_warning(
    started: RillServer, caplog: pytest.LogCaptureFixture
) -> None:
    [installed] = [
        f for f in logging.getLogger(GRPC_CYGRPC_LOGGER).filters if isinstance(f, GrpcDecodeErrorFilter)
    ]
    installed.limit = RateLimit()  # installed once per process by the server: start its minute now
    body = orders_pb2.ProcessOrdersRequest(order_ids=["a"]).SerializeToString()
    raw = await RawH2.connect(started.address)
    try:
        streams = [
            raw.open_stream(PROCESS_ORDERS, metadata=[(b"x-note", b"\xff\xfe")], body=body) for _ in range(20)
        ]
        await raw.flush()
        await raw.read_until(
            lambda r: all(r.grpc_status(stream) is not None for stream in streams), timeout=30
        )
    finally:
        await raw.aclose()
    assert {raw.grpc_status(stream) for stream in streams} == {(0, "")}, "the calls are served"
    grpc_lines = [r for r in caplog.records if r.name == GRPC_CYGRPC_LOGGER]
    assert len(grpc_lines) == 1, [r.getMessage() for r in grpc_lines]
    assert grpc_lines[0].levelno == logging.WARNING
    assert grpc_lines[0].exc_info is None
    assert grpc_lines[0].getMessage() == "a call's metadata value is not valid UTF-8: read as Latin-1"
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("started", [{"orders_kept": 100}], indirect=True)
async def test_the_order_book_keeps_the_most_recent_orders_only(started: RillServer) -> None:
    ids = [f"o{index}" for index in range(300)]
    async with grpc.aio.insecure_channel(started.address) as channel:
        assert await process_orders(channel, ids) == ids
        assert await process_orders(channel, ["o0"]) == ["o0"], "recorded again: the most recent"
        orders = orders_pb2_grpc.OrderServiceStub(channel)
        for kept in ("o0", "o201", "o299"):
            assert (await orders.GetOrder(orders_pb2.GetOrderRequest(order_id=kept))).order_id == kept
        with pytest.raises(grpc.aio.AioRpcError) as forgotten:
            await orders.GetOrder(orders_pb2.GetOrderRequest(order_id="o200"))
        assert forgotten.value.code() == grpc.StatusCode.NOT_FOUND
        assert "keeps the last 100 orders" in (forgotten.value.details() or "")
    book = started.handlers.order_book()
    assert (len(book), book.recorded) == (100, 301)


@pytest.mark.parametrize("started", [{"files_kept": 5}], indirect=True)
async def test_the_file_ledger_keeps_the_most_recent_file_ids_only(started: RillServer) -> None:
    ids = [f"missing-{index}.txt" for index in range(50)]  # clients choose the ids, missing ones too
    async with grpc.aio.insecure_channel(started.address) as channel:
        files = files_pb2_grpc.FileServiceStub(channel)
        results = [r async for r in files.ProcessFiles(files_pb2.ProcessFilesRequest(file_ids=ids))]
    assert [r.status for r in results] == ["not_found"] * 50
    ledger = started.handlers.file_ledger()
    assert list(ledger.last) == ids[-5:]
    assert ledger.by_status["not_found"] == 50


async def test_the_memory_broker_keeps_the_last_messages_and_says_so_once(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    broker = InMemoryMessageBroker(capacity=50)
    server = create_server(server_settings, broker=broker)
    ids = [f"o{index}" for index in range(200)]
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        assert await process_orders(channel, ids) == ids
        assert await process_orders(channel, ids) == ids, "the same ids again: 200 more messages"
    assert [m.payload["order_id"] for m in broker.messages] == ids[-50:]
    assert (broker.received, broker.dropped) == (400, 350)
    [line] = [r for r in caplog.records if r.name == "mediator.message_brokers.memory"]
    assert (
        line.getMessage()
        == "InMemoryMessageBroker keeps the last 50 messages: dropping the oldest from now on"
    )
