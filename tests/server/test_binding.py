"""``ServiceBinding`` as a service author meets it: what it refuses to bind, and what the server it
builds reports (the RPC kinds in the metrics, the items counted with and without the timed path)."""

from __future__ import annotations

import asyncio
import logging
import typing

import grpc
import pytest
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2

import mediator
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server
from server.binding import Rpc, ServiceBinding
from server.convert import BindingError
from server.limits import LimitSettings
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand
from tests.gated_broker import GatedBroker
from tests.typed_grpc import rich_status

ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
PROCESS = Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult)
GET = Rpc("GetOrder", GetOrderQuery, OrderView)


@pytest.fixture
def streaming() -> mediator.StreamingRequestMediator:
    return mediator.bootstrap.bootstrap_streaming()


@pytest.fixture
def unary() -> mediator.RequestMediator:
    return mediator.bootstrap.bootstrap()


def test_a_binding_keeps_its_service_and_rpcs(
    streaming: mediator.StreamingRequestMediator, unary: mediator.RequestMediator
) -> None:
    binding = ServiceBinding(ORDERS, streaming=streaming, unary=unary, rpcs=[PROCESS, GET])
    assert binding.service is ORDERS
    assert binding.name == "orders.v1.OrderService"
    assert [(bound.rpc, bound.path) for bound in binding.rpcs] == [
        (PROCESS, "/orders.v1.OrderService/ProcessOrders"),
        (GET, "/orders.v1.OrderService/GetOrder"),
    ]


def test_an_rpc_the_service_does_not_have_is_refused_by_name(
    streaming: mediator.StreamingRequestMediator, unary: mediator.RequestMediator
) -> None:
    with pytest.raises(BindingError) as raised:
        ServiceBinding(
            ORDERS,
            streaming=streaming,
            unary=unary,
            rpcs=[PROCESS, GET, Rpc("Nope", GetOrderQuery, OrderView), Rpc("Nada", GetOrderQuery, OrderView)],
        )
    assert str(raised.value) == "orders.v1.OrderService has no RPC named Nope, Nada"


def test_an_rpc_left_unbound_is_refused_by_name(
    streaming: mediator.StreamingRequestMediator, unary: mediator.RequestMediator
) -> None:
    with pytest.raises(BindingError) as raised:
        ServiceBinding(ORDERS, streaming=streaming, unary=unary, rpcs=[])
    assert str(raised.value) == "orders.v1.OrderService: no binding for GetOrder, ProcessOrders"


def test_each_kind_of_rpc_needs_its_kind_of_mediator(
    streaming: mediator.StreamingRequestMediator, unary: mediator.RequestMediator
) -> None:
    with pytest.raises(BindingError) as no_streaming:
        ServiceBinding(ORDERS, unary=unary, rpcs=[PROCESS, GET])
    assert str(no_streaming.value) == (
        "orders.v1.OrderService.ProcessOrders streams: its service needs a StreamingRequestMediator"
    )
    with pytest.raises(BindingError) as no_unary:
        ServiceBinding(ORDERS, streaming=streaming, rpcs=[PROCESS, GET])
    assert (
        str(no_unary.value) == "orders.v1.OrderService.GetOrder is unary: its service needs a RequestMediator"
    )


async def test_an_undecodable_body_names_the_expected_message(channel: grpc.aio.Channel) -> None:
    method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
        "/orders.v1.OrderService/ProcessOrders", request_serializer=None, response_deserializer=None
    )
    call = method(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rich_status(raised.value)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    [violation] = bad_request.field_violations
    assert violation.field == "request"
    assert violation.description.startswith("not a valid orders.v1.ProcessOrdersRequest: ")


def _rpc_sample(server: RillServer, name: str, kind: str, method: str, **labels: str) -> float | None:
    assert server.metrics is not None
    service = "files.v1.FileService" if method == "ProcessFiles" else "orders.v1.OrderService"
    return server.metrics.registry.get_sample_value(
        name,
        {"grpc_type": kind, "grpc_service": service, "grpc_method": method, "transport": "grpc", **labels},
    )


async def _three_orders_and_a_lookup(server: RillServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        assert [
            result.order_id
            async for result in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a", "b", "c"]))
        ] == ["a", "b", "c"]
        assert (await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))).order_id == "a"


@pytest.mark.parametrize("stall_timeout", [30.0, None], ids=["stall watch on", "stall watch off"])
async def test_the_metrics_know_each_rpc_s_kind_and_count_every_message(
    server_settings: Settings, stall_timeout: float | None
) -> None:
    settings = server_settings.model_copy(update={"limits": LimitSettings(stall_timeout=stall_timeout)})
    async with create_server(settings) as server:
        await _three_orders_and_a_lookup(server)
        assert _rpc_sample(server, "grpc_server_started_total", "server_stream", "ProcessOrders") == 1
        assert _rpc_sample(server, "grpc_server_msg_sent_total", "server_stream", "ProcessOrders") == 3
        assert _rpc_sample(server, "grpc_server_started_total", "unary", "GetOrder") == 1
        assert _rpc_sample(server, "grpc_server_msg_sent_total", "unary", "GetOrder") == 1


async def test_without_metrics_or_stall_watch_the_items_are_still_counted(
    server_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # No metrics, no stall watch: the stream takes the adapter's untimed path.
    caplog.set_level(logging.INFO, logger="server.calls")
    settings = server_settings.model_copy(
        update={"metrics": False, "limits": LimitSettings(stall_timeout=None)}
    )
    async with create_server(settings) as server:
        await _three_orders_and_a_lookup(server)
    [ended] = [record for record in caplog.records if getattr(record, "method", "").endswith("ProcessOrders")]
    assert (ended.code, ended.items) == ("OK", 3)  # type: ignore[attr-defined]  # the log's extra fields


def test_a_client_streaming_rpc_is_refused_by_name(streaming: mediator.StreamingRequestMediator) -> None:
    # grpc's own reflection service is the one at hand with a client-streaming (bidi) RPC.
    # (its generated module's stub types the descriptor as upb's class, which is the same at run time)
    services = reflection_pb2.DESCRIPTOR.services_by_name
    reflection = typing.cast(ServiceDescriptor, services["ServerReflection"])
    with pytest.raises(BindingError) as raised:
        ServiceBinding(
            reflection, streaming=streaming, rpcs=[Rpc("ServerReflectionInfo", GetOrderQuery, OrderView)]
        )
    assert str(raised.value) == (
        "grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo: "
        "client-streaming RPCs are not supported"
    )


class QuotaExceeded(Exception):
    """A service's own exception, which its binding maps to a code."""


class OverQuota(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        await asyncio.sleep(0)  # the failure comes after the handler suspended, as a real one's does
        raise QuotaExceeded(f"no lookups left for {request.order_id}")


def _over_quota(mapper: mediator.RequestMap) -> None:
    mapper.bind(GetOrderQuery, OverQuota)


async def test_a_service_s_own_exception_reaches_the_client_with_the_code_its_binding_names(
    server_settings: Settings, streaming: mediator.StreamingRequestMediator
) -> None:
    binding = ServiceBinding(
        ORDERS,
        streaming=streaming,
        unary=mediator.bootstrap.bootstrap(commands_mapper=_over_quota),
        rpcs=[PROCESS, GET],
        error_codes={QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED},
    )
    server = create_server(server_settings, services=[binding])
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await orders_pb2_grpc.OrderServiceStub(channel).GetOrder(
                orders_pb2.GetOrderRequest(order_id="a"), timeout=30
            )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details() == "no lookups left for a"


@pytest.mark.parametrize(
    ("error_codes", "message"),
    [
        (
            {"QuotaExceeded": grpc.StatusCode.INTERNAL},
            "orders.v1.OrderService: error_codes keys must be exception classes, not 'QuotaExceeded'",
        ),
        (
            {int: grpc.StatusCode.INTERNAL},
            "orders.v1.OrderService: error_codes keys must be exception classes, not <class 'int'>",
        ),
        (
            {QuotaExceeded: 8},
            "orders.v1.OrderService: QuotaExceeded must map to an error code, not 8",
        ),
        (
            {QuotaExceeded: grpc.StatusCode.OK},
            "orders.v1.OrderService: QuotaExceeded must map to an error code, not StatusCode.OK",
        ),
    ],
    ids=["a name", "a class that is no exception", "a number", "OK"],
)
def test_error_codes_that_are_not_exceptions_and_error_codes_are_refused_by_name(
    streaming: mediator.StreamingRequestMediator,
    unary: mediator.RequestMediator,
    error_codes: typing.Any,
    message: str,
) -> None:
    with pytest.raises(BindingError) as raised:
        ServiceBinding(ORDERS, streaming=streaming, unary=unary, rpcs=[PROCESS, GET], error_codes=error_codes)
    assert str(raised.value) == message


async def test_the_unary_mediator_s_broker_is_closed_with_the_server(
    server_settings: Settings, streaming: mediator.StreamingRequestMediator
) -> None:
    # A unary mediator with a broker of its own: the server owns it only if the binding passed it on.
    broker = GatedBroker()
    binding = ServiceBinding(
        ORDERS,
        streaming=streaming,
        unary=mediator.bootstrap.bootstrap(commands_mapper=_over_quota, message_broker=broker),
        rpcs=[PROCESS, GET],
    )
    async with create_server(server_settings, services=[binding]):
        assert broker.log == []
    assert broker.log == ["closed"]
