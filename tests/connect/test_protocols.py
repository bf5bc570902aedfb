"""Connect (JSON and binary) and gRPC-Web (binary and text) on the real edge, read byte by byte."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import httpx
import pytest

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer
from server.calls import CallRegistry
from tests.connect.conftest import GET_ORDER, PROCESS
from tests.connect.wire import (
    END_STREAM,
    TRAILERS,
    connect_violations,
    envelope,
    frames,
    grpc_web_status,
    grpc_web_trailers,
    json_messages,
    proto_messages,
    text_decode,
    trailers,
)
from tests.server.gated import Probe
from tests.server.test_service import field_violations

CONNECT_JSON = {"content-type": "application/connect+json"}
CONNECT_PROTO = {"content-type": "application/connect+proto"}
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
GRPC_WEB_TEXT = {"content-type": "application/grpc-web-text", "x-grpc-web": "1"}


def _process(*ids: str) -> bytes:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(ids)).SerializeToString()


async def test_connect_json_streams_one_message_per_item_then_an_empty_end(edge: httpx.AsyncClient) -> None:
    body = envelope(json.dumps({"orderIds": ["a", "b", "c"]}).encode())
    response = await edge.post(PROCESS, content=body, headers={**CONNECT_JSON, "x-request-id": "req-1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/connect+json"
    assert response.headers["x-request-id"] == "req-1"
    messages, end = json_messages(response.content)
    assert [m["orderId"] for m in messages] == ["a", "b", "c"]
    assert messages[0].keys() == {"orderId", "status", "processedAt", "itemsCount"}
    assert "error" not in end


async def test_connect_proto_streams_protobuf_messages(edge: httpx.AsyncClient) -> None:
    response = await edge.post(PROCESS, content=envelope(_process("a", "b")), headers=CONNECT_PROTO)
    assert response.headers["content-type"] == "application/connect+proto"
    messages, end = proto_messages(response.content, orders_pb2.OrderProcessedResult, end_flag=END_STREAM)
    assert [m.order_id for m in messages] == ["a", "b"]
    assert messages[0].items_count == 3
    assert json.loads(end) == {}


async def test_connect_unary_in_json_and_proto_reads_what_the_stream_recorded(
    edge: httpx.AsyncClient,
) -> None:
    await edge.post(PROCESS, content=envelope(_process("u1")), headers=CONNECT_PROTO)
    as_json = await edge.post(GET_ORDER, json={"orderId": "u1"})
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json()["customerId"] == "customer_u1"
    as_proto = await edge.post(
        GET_ORDER,
        content=orders_pb2.GetOrderRequest(order_id="u1").SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    assert as_proto.headers["content-type"] == "application/proto"
    assert orders_pb2.Order.FromString(as_proto.content).total_amount == 100.0


async def test_grpc_web_streams_frames_and_ends_with_trailers_in_the_body(edge: httpx.AsyncClient) -> None:
    response = await edge.post(PROCESS, content=envelope(_process("a", "b")), headers=GRPC_WEB)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web+proto"
    messages, end = proto_messages(response.content, orders_pb2.OrderProcessedResult, end_flag=TRAILERS)
    assert [m.order_id for m in messages] == ["a", "b"]
    assert trailers(end)["grpc-status"] == "0"


async def test_grpc_web_text_is_base64_both_ways(edge: httpx.AsyncClient) -> None:
    request = base64.b64encode(envelope(_process("a", "b", "c")))
    response = await edge.post(PROCESS, content=request, headers=GRPC_WEB_TEXT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/grpc-web-text+proto"
    body = text_decode(response.content)
    messages, end = proto_messages(body, orders_pb2.OrderProcessedResult, end_flag=TRAILERS)
    assert [m.order_id for m in messages] == ["a", "b", "c"]
    assert trailers(end)["grpc-status"] == "0"


async def test_invalid_argument_has_the_same_code_and_violations_on_every_protocol(
    edge: httpx.AsyncClient, http_service: RillServer
) -> None:
    bad = _process("ok", "")
    async with grpc.aio.insecure_channel(http_service.address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest.FromString(bad)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = field_violations(caught.value)
    assert [field for field, _ in expected] == ["order_ids[1]"]

    connect = await edge.post(PROCESS, content=envelope(bad), headers=CONNECT_PROTO)
    _, end = json_messages(connect.content)  # the end-of-stream message is JSON in both codecs
    assert end["error"]["code"] == "invalid_argument"
    assert connect_violations(end["error"]) == expected

    web = await edge.post(PROCESS, content=envelope(bad), headers=GRPC_WEB)
    assert grpc_web_status(grpc_web_trailers(web)) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], expected)


async def test_not_found_is_connects_not_found_and_grpc_webs_5(edge: httpx.AsyncClient) -> None:
    connect = await edge.post(GET_ORDER, json={"orderId": "never"})
    assert connect.status_code == 404
    assert connect.json() == {
        "code": "not_found",
        "message": "order 'never' is not known (the service keeps the last 10,000 orders)",
    }
    request = orders_pb2.GetOrderRequest(order_id="never").SerializeToString()
    web = await edge.post(GET_ORDER, content=envelope(request), headers=GRPC_WEB)
    status = grpc_web_trailers(web)
    assert grpc_web_status(status) == (grpc.StatusCode.NOT_FOUND.value[0], [])
    assert "is%20not%20known" in status["grpc-message"]


async def test_an_undecodable_body_is_invalid_argument_not_unknown(edge: httpx.AsyncClient) -> None:
    broken = await edge.post(PROCESS, content=envelope(b"\xff\xff\xff"), headers=CONNECT_PROTO)
    _, end = json_messages(broken.content)
    assert end["error"]["code"] == "invalid_argument"
    not_json = await edge.post(GET_ORDER, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["code"] == "invalid_argument"


async def test_an_error_after_items_ends_the_stream_with_it_and_no_internals(
    gated_edge: tuple[httpx.AsyncClient, Probe, CallRegistry],
) -> None:
    client, probe, _ = gated_edge
    probe.failing = "b"
    response = await client.post(PROCESS, content=envelope(_process("a", "b")), headers=CONNECT_PROTO)
    messages, end = proto_messages(response.content, orders_pb2.OrderProcessedResult, end_flag=END_STREAM)
    assert [m.order_id for m in messages] == ["a"]
    error = json.loads(end)["error"]
    assert error["code"] == "internal"
    assert "secret" not in error["message"]
    assert "request id" in error["message"]


async def test_plain_grpc_is_refused_on_the_edge(edge: httpx.AsyncClient) -> None:
    response = await edge.post(
        PROCESS, content=envelope(_process("a")), headers={"content-type": "application/grpc"}
    )
    assert response.status_code == 415


@pytest.mark.parametrize("headers", [CONNECT_PROTO, GRPC_WEB], ids=["connect", "grpc-web"])
async def test_a_client_that_goes_away_mid_stream_stops_the_handler(
    gated_edge: tuple[httpx.AsyncClient, Probe, CallRegistry], headers: dict[str, str]
) -> None:
    client, probe, calls = gated_edge
    received = 0
    async with client.stream(
        "POST", PROCESS, content=envelope(_process("a", "b", "g-never")), headers=headers
    ) as response:
        async for _chunk in response.aiter_raw():
            received += 1
            if probe.produced == ["a", "b"]:
                break
    # Leaving the block closed the connection while the handler waits at g-never's gate.
    await asyncio.wait_for(probe.finally_ran.wait(), timeout=30)
    assert await calls.wait_idle(30)
    assert received >= 1
    assert probe.handled == ["a", "b"], "the events of delivered items were handled"


async def test_grpc_web_text_that_is_not_base64_is_refused_invalid_argument(edge: httpx.AsyncClient) -> None:
    response = await edge.post(PROCESS, content=b"not base64!", headers=GRPC_WEB_TEXT)
    assert response.headers["content-type"] == "application/grpc-web-text+proto"
    [(flags, data)] = frames(text_decode(response.content))
    assert flags & TRAILERS
    assert trailers(data)["grpc-status"] == "3"
