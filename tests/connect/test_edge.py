"""What the edge does around the protocols: auth, CORS, metrics and the drain, as on gRPC and SSE."""

from __future__ import annotations

import json
import typing

import httpx
import pydantic
import pytest

from protos.orders.v1 import orders_pb2
from server import RillServer, Settings, create_server
from server.connect import CorsSettings
from tests.connect.conftest import GET_ORDER, PROCESS
from tests.connect.wire import (
    END_STREAM,
    envelope,
    grpc_web_status,
    grpc_web_trailers,
    json_messages,
    proto_messages,
)
from tests.observability.test_metrics import scrape, value

TOKEN = "s3cret-token"
ORIGIN = "http://app.example:5173"


@pytest.fixture
async def guarded(server_settings: Settings) -> typing.AsyncIterator[RillServer]:
    """The service with a bearer token and one allowed browser origin."""
    settings = server_settings.model_copy(
        update={
            "http_address": "127.0.0.1:0",
            "auth_token": pydantic.SecretStr(TOKEN),
            "cors": CorsSettings(allow_origins=[ORIGIN]),
        }
    )
    server = create_server(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


def _url(server: RillServer, path: str) -> str:
    assert server.http is not None
    return f"http://{server.http.address}{path}"


def _process(*ids: str) -> bytes:
    return envelope(orders_pb2.ProcessOrdersRequest(order_ids=list(ids)).SerializeToString())


async def test_a_call_without_the_token_is_refused_in_each_protocols_shape(guarded: RillServer) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        connect = await client.post(_url(guarded, GET_ORDER), json={"orderId": "a"})
        assert connect.status_code == 401
        assert connect.json()["code"] == "unauthenticated"
        stream = await client.post(
            _url(guarded, PROCESS),
            content=_process("a"),
            headers={"content-type": "application/connect+proto", "authorization": "Bearer wrong"},
        )
        _, end = json_messages(stream.content)
        assert end["error"]["code"] == "permission_denied"
        web = await client.post(
            _url(guarded, PROCESS),
            content=_process("a"),
            headers={"content-type": "application/grpc-web+proto"},
        )
        assert grpc_web_status(grpc_web_trailers(web))[0] == 16  # UNAUTHENTICATED
        allowed = await client.post(
            _url(guarded, PROCESS),
            content=_process("a"),
            headers={"content-type": "application/connect+proto", "authorization": f"Bearer {TOKEN}"},
        )
        assert allowed.status_code == 200
        messages, end_data = proto_messages(
            allowed.content, orders_pb2.OrderProcessedResult, end_flag=END_STREAM
        )
        assert [m.order_id for m in messages] == ["a"]
        assert json.loads(end_data) == {}


async def test_a_preflight_from_an_allowed_origin_is_answered_without_the_token(guarded: RillServer) -> None:
    preflight = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version,x-grpc-web,authorization",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        allowed = await client.options(_url(guarded, PROCESS), headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        refused = await client.options(
            _url(guarded, PROCESS), headers={**preflight, "origin": "http://evil.example"}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        call = await client.post(
            _url(guarded, GET_ORDER),
            json={"orderId": "a"},
            headers={"origin": ORIGIN, "authorization": f"Bearer {TOKEN}"},
        )
        assert call.headers["access-control-allow-origin"] == ORIGIN
        exposed = call.headers["access-control-expose-headers"].lower()
        assert {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"} <= set(
            exposed.split(", ")
        )


async def test_without_cors_settings_no_origin_is_allowed(http_service: RillServer) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.options(
            _url(http_service, PROCESS), headers={"origin": ORIGIN, "access-control-request-method": "POST"}
        )
    assert "access-control-allow-origin" not in response.headers


def test_cors_refuses_credentials_with_any_origin() -> None:
    with pytest.raises(ValueError, match="allow_credentials"):
        CorsSettings(allow_origins=["*"], allow_credentials=True)


async def test_calls_are_counted_per_protocol_in_the_same_series(http_service: RillServer) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(
            _url(http_service, PROCESS),
            content=_process("m1", "m2"),
            headers={"content-type": "application/connect+proto"},
        )
        await client.post(
            _url(http_service, PROCESS),
            content=_process("m3"),
            headers={"content-type": "application/grpc-web+proto"},
        )
        await client.post(_url(http_service, GET_ORDER), json={"orderId": "never"})
    assert http_service.http is not None
    samples = await scrape(f"http://{http_service.http.address}")
    orders = {"grpc_service": "orders.v1.OrderService", "grpc_method": "ProcessOrders"}
    assert value(samples, "grpc_server_msg_sent_total", **orders, transport="connect") == 2
    assert value(samples, "grpc_server_msg_sent_total", **orders, transport="grpc-web") == 1
    assert value(samples, "grpc_server_handled_total", **orders, transport="grpc-web", grpc_code="OK") == 1
    get = {"grpc_service": "orders.v1.OrderService", "grpc_method": "GetOrder", "grpc_type": "unary"}
    assert value(samples, "grpc_server_handled_total", **get, transport="connect", grpc_code="NOT_FOUND") == 1
    assert http_service.calls.active == 0


async def test_larger_requests_than_the_limit_are_resource_exhausted(server_settings: Settings) -> None:
    settings = server_settings.model_copy(
        update={
            "http_address": "127.0.0.1:0",
            "limits": server_settings.limits.model_copy(update={"max_receive_message_bytes": 1024}),
        }
    )
    async with create_server(settings) as server, httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            _url(server, PROCESS),
            content=_process(*[f"order-{i}" for i in range(200)]),
            headers={"content-type": "application/connect+proto"},
        )
    _, end = json_messages(response.content)
    assert end["error"]["code"] == "resource_exhausted"
