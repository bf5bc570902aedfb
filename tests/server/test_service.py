"""The real service, in-process on a free port, called by a real grpc.aio client."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pathlib

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2

from mediator import bootstrap
from mediator.exceptions import BrokerUnavailable
from mediator.message_brokers.memory import InMemoryMessageBroker
from mediator.message_brokers.protocol import Message
from protos.files.v1 import files_pb2, files_pb2_grpc
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server
from server.binding import Rpc, ServiceBinding
from server.demo import Handlers
from server.services import orders
from server.settings import ServiceSettings
from server.testing import serving
from tests.typed_grpc import health_stub, read, read_or_none, rich_status


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rich_status(error)
    assert status is not None, "INVALID_ARGUMENT without google.rpc.Status details"
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


async def test_process_orders_streams_one_result_per_order_in_order(channel: grpc.aio.Channel) -> None:
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    results = [
        r async for r in orders.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a", "b", "c"]))
    ]
    assert [r.order_id for r in results] == ["a", "b", "c"]
    assert {r.status for r in results} == {"processed"}
    assert all(r.items_count == 3 and r.processed_at.seconds > 0 for r in results)


async def test_get_order_returns_what_the_event_handler_recorded(
    channel: grpc.aio.Channel, broker: InMemoryMessageBroker
) -> None:
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await orders.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    [result] = [r async for r in orders.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a"]))]
    order = await orders.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))
    assert (order.order_id, order.customer_id, order.total_amount, order.status) == (
        "a",
        "customer_a",
        100.0,
        "processed",
    )
    assert order.processed_at == result.processed_at
    [notification] = broker.by_topic("orders.processed")
    assert notification.message_name == "OrderProcessedNotification"
    assert notification.payload == {"order_id": "a", "customer_id": "customer_a", "total_amount": 100.0}


async def test_request_id_is_echoed_in_trailing_metadata(channel: grpc.aio.Channel) -> None:
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    call = orders.ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=["a"]), metadata=(("x-request-id", "req-42"),)
    )
    assert [r.order_id async for r in call] == ["a"]
    assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata())


@pytest.mark.parametrize(
    ("order_ids", "field"),
    [
        ([], "order_ids"),
        (["ok", ""], "order_ids[1]"),
        (["x" * 129], "order_ids[0]"),
        (["bad\nid"], "order_ids[0]"),
    ],
)
async def test_invalid_orders_are_refused_with_field_violations(
    channel: grpc.aio.Channel, order_ids: list[str], field: str
) -> None:
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    call = orders.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=order_ids))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pytest.fail("nothing may be streamed for an invalid request")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [violation_field for violation_field, _ in field_violations(raised.value)] == [field]


async def test_many_bad_ids_answer_invalid_argument_with_the_first_violations_and_a_count(
    channel: grpc.aio.Channel,
) -> None:
    # One violation per id made a BadRequest larger than grpc's 16 KiB metadata limit: the client
    # got RESOURCE_EXHAUSTED instead. The longest violations the service makes: ids one over the limit.
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    for order_ids in ([""] * 150, ["x" * 129] * 10_000):
        call = orders.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=order_ids))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pytest.fail("nothing may be streamed for an invalid request")
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        violations = field_violations(raised.value)
        assert [field for field, _ in violations] == [f"order_ids[{i}]" for i in range(20)] + ["request"]
        assert violations[-1][1] == f"and {len(order_ids) - 20} more violations, not listed"
        assert f"(and {len(order_ids) - 5} more)" in (raised.value.details() or "")


class _UnavailableBroker:
    """A broker that is down: what RabbitMQMessageBroker raises once its retries are spent."""

    async def send_message(self, message: Message) -> None:
        raise BrokerUnavailable(
            f"RabbitMQ at amqp://guest:******@10.0.0.7:5672/ did not confirm message {message.message_id} "
            "after 4 attempts: AMQPConnectionError('connection refused')"
        )

    async def aclose(self) -> None:
        pass


async def test_an_unavailable_broker_tells_the_client_the_cause_and_the_log_the_details(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = create_server(server_settings, broker=_UnavailableBroker())
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=["a"]), metadata=(("x-request-id", "req-7"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "notification broker unavailable (request id req-7)"
    [logged] = [r for r in caplog.records if r.name == "server.calls" and r.levelno == logging.ERROR]
    assert "req-7" in logged.getMessage()
    assert "amqp://guest:******@10.0.0.7:5672/ did not confirm message" in (logged.exc_text or "")


async def test_process_files_hashes_each_file_and_reports_missing_ones(
    channel: grpc.aio.Channel, storage_root: pathlib.Path
) -> None:
    files = files_pb2_grpc.FileServiceStub(channel)
    ids = ["hello.txt", "missing.txt", "large.bin", "reports"]
    results = [r async for r in files.ProcessFiles(files_pb2.ProcessFilesRequest(file_ids=ids))]
    assert [(r.file_id, r.status) for r in results] == [
        ("hello.txt", "completed"),
        ("missing.txt", "not_found"),
        ("large.bin", "completed"),
        ("reports", "not_found"),
    ]
    for result in (results[0], results[2]):
        content = (storage_root / result.file_id).read_bytes()
        assert result.size_bytes == len(content)
        assert result.sha256 == hashlib.sha256(content).hexdigest()
    assert results[1].size_bytes == 0
    assert results[1].sha256 == ""


async def test_file_ids_leaving_the_storage_root_are_refused_before_anything_is_read(
    channel: grpc.aio.Channel, storage_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    os.symlink(outside, storage_root / "escape.txt")
    os.symlink(tmp_path, storage_root / "escape-dir")
    files = files_pb2_grpc.FileServiceStub(channel)
    ids = [
        "hello.txt",
        "../secret.txt",
        str(outside),
        "escape.txt",
        "escape-dir/secret.txt",
        "a/../hello.txt",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in files.ProcessFiles(files_pb2.ProcessFilesRequest(file_ids=ids)):
            pytest.fail("nothing may be streamed when any id leaves the root")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(raised.value)] == [f"file_ids[{i}]" for i in range(1, 6)]


async def test_a_link_swapped_in_after_the_check_is_not_followed(
    rill_server: RillServer, storage_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # The check resolves every id before the stream starts; the files are opened one by one later.
    # A directory swapped for a link to outside the root in between must not be followed.
    (storage_root / "sub").mkdir()
    (storage_root / "sub" / "secret.txt").write_text("inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside")
    inside_hash = hashlib.sha256(b"inside").hexdigest()
    outside_hash = hashlib.sha256(b"outside").hexdigest()
    ids = ["sub/secret.txt"] * 1_000
    # bdp_probe=0 keeps the client's window at 64 KiB: the server can run at most ~600 results
    # (~110 bytes each) ahead, so the later files are opened after the swap below.
    async with grpc.aio.insecure_channel(
        rill_server.address, options=[("grpc.http2.bdp_probe", 0)]
    ) as channel:
        call = files_pb2_grpc.FileServiceStub(channel).ProcessFiles(
            files_pb2.ProcessFilesRequest(file_ids=ids)
        )
        first = await read(call)  # not grpc.aio.EOF
        assert first.sha256 == inside_hash
        (storage_root / "sub").rename(storage_root / "sub-before")
        os.symlink(outside, storage_root / "sub")
        results = [first]
        while (result := await read_or_none(call)) is not None:
            results.append(result)
    assert len(results) == 1_000
    assert outside_hash not in {result.sha256 for result in results}, "a file outside the root was read"
    assert {(r.status, r.sha256) for r in results} == {("completed", inside_hash), ("not_found", "")}


async def test_undecodable_request_body_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
        "/orders.v1.OrderService/ProcessOrders", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call(b"\xff\xff\xff\xff"):
            pytest.fail("an undecodable request must not stream")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(raised.value)] == ["request"]


async def test_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/orders.v1.OrderService/Nope", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_reports_each_service_and_goes_not_serving_on_stop(server_settings: Settings) -> None:
    server = create_server(server_settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_stub(channel)
            for service in ("", "orders.v1.OrderService", "files.v1.FileService"):
                response = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert response.status == health_pb2.HealthCheckResponse.SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest(service="orders.v1.OrderService"))
            assert (await read(watch)).status == health_pb2.HealthCheckResponse.SERVING
            stopping = asyncio.create_task(server.stop(grace=5))
            assert (await read(watch)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            await stopping
    finally:
        await server.stop(grace=0)


async def test_each_service_gets_its_own_event_concurrency(storage_root: pathlib.Path) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        http_address="",
        storage_root=storage_root,
        orders=ServiceSettings(max_concurrent_event_handlers=2, event_delivery="overlapped"),
        files=ServiceSettings(concurrent_event_handle_enable=False),
    )
    server: RillServer = create_server(settings)
    assert server.mediators["orders"].max_concurrent_event_handlers == 2
    assert server.mediators["orders"].event_delivery == "overlapped"
    assert server.mediators["files"].max_concurrent_event_handlers_per_stream == 1
    assert server.mediators["files"].event_delivery == "strict"
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            orders = orders_pb2_grpc.OrderServiceStub(channel)
            ids = [f"o{i}" for i in range(50)]

            async def one_stream() -> list[str]:
                return [
                    r.order_id
                    async for r in orders.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
                ]

            assert await asyncio.gather(*(one_stream() for _ in range(4))) == [ids] * 4
        assert 1 <= server.mediators["orders"].peak_event_handlers_running <= 2
    finally:
        await server.stop(grace=0)


class _UnreachableStore:
    """Units of work whose commit finds the database gone (a store raises a ConnectionError then)."""

    def begin(self) -> _UnreachableStore:
        return self

    async def commit(self) -> None:
        await asyncio.sleep(0)
        raise ConnectionError("connection to 10.0.0.9:5432 refused")

    def rollback(self) -> None:
        pass


async def test_a_store_that_cannot_be_reached_answers_unavailable_before_the_item(
    server_settings: Settings,
) -> None:
    handlers = Handlers()
    handlers.config.from_dict({"orders_kept": 100})
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=bootstrap.bootstrap_streaming(
            commands_mapper=orders.commands_mapper,
            domain_events_mapper=orders.domain_events_mapper,
            di_container=handlers,
            unit_of_work=_UnreachableStore(),
        ),
        unary=bootstrap.bootstrap(commands_mapper=orders.commands_mapper, di_container=handlers),
        rpcs=[
            Rpc("ProcessOrders", orders.ProcessOrdersCommand, orders.OrderProcessedResult),
            Rpc("GetOrder", orders.GetOrderQuery, orders.OrderView),
        ],
    )
    async with serving([binding], server_settings) as served:
        call = orders_pb2_grpc.OrderServiceStub(served.channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"]), metadata=(("x-request-id", "req-8"),)
        )
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for item in call:
                received.append(item)
    assert received == []  # strict: the item is not delivered when its unit was not kept
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "state store unavailable (request id req-8)"
