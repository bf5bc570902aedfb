"""The HTTP/SSE edge: a real uvicorn on a free port, a real HTTP client (httpx + httpx-sse)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing

import grpc
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from protos.files.v1 import files_pb2
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer
from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from tests.server.gated import Probe, fresh_probe, gated_binding, origins, stray_tasks
from tests.server.test_service import field_violations


@pytest.fixture
async def http(http_service: RillServer) -> typing.AsyncIterator[httpx.AsyncClient]:
    assert http_service.http is not None
    async with httpx.AsyncClient(base_url=f"http://{http_service.http.address}", timeout=30) as client:
        yield client


@pytest.fixture
async def gated_http() -> typing.AsyncIterator[tuple[httpx.AsyncClient, Probe, CallRegistry]]:
    """The gated test handlers behind the HTTP edge, with a short keep-alive interval."""
    probe = fresh_probe()
    calls = CallRegistry()
    server = HttpServer(create_http_app([gated_binding()], calls, ping_seconds=0.2), "127.0.0.1:0")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=30) as client:
            yield client, probe, calls
    finally:
        await server.stop(grace=0)


async def events_of(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: typing.Any
) -> list[ServerSentEvent]:
    async with aconnect_sse(client, method, url, **kwargs) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in source.aiter_sse()]


async def test_post_streams_start_progress_per_item_and_complete(http: httpx.AsyncClient) -> None:
    events = await events_of(http, "POST", "/v1/orders:process", json={"order_ids": ["a", "b", "c"]})
    assert [e.event for e in events] == ["start", "progress", "progress", "progress", "complete"]
    progress = [e for e in events if e.event == "progress"]
    assert [e.id for e in progress] == ["0", "1", "2"]
    assert [json.loads(e.data)["order_id"] for e in progress] == ["a", "b", "c"]
    assert json.loads(progress[0].data).keys() == {"order_id", "status", "processed_at", "items_count"}
    assert json.loads(events[-1].data) == {"items": 3}


async def test_get_form_takes_query_parameters_for_event_source(http: httpx.AsyncClient) -> None:
    events = await events_of(
        http, "GET", "/v1/files:process", params=[("file_ids", "hello.txt"), ("file_ids", "x")]
    )
    results = [json.loads(e.data) for e in events if e.event == "progress"]
    assert [(r["file_id"], r["status"]) for r in results] == [("hello.txt", "completed"), ("x", "not_found")]


async def test_get_order_is_json_and_sees_what_the_http_stream_recorded(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/orders/a")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    await events_of(http, "POST", "/v1/orders:process", json={"order_ids": ["a"]})
    found = await http.get("/v1/orders/a")
    assert found.status_code == 200
    assert found.json()["customer_id"] == "customer_a"


GRPC_TWIN: dict[str, tuple[str, typing.Any]] = {
    "/v1/orders:process": ("/orders.v1.OrderService/ProcessOrders", orders_pb2.ProcessOrdersRequest),
    "/v1/files:process": ("/files.v1.FileService/ProcessFiles", files_pb2.ProcessFilesRequest),
}


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/orders:process", {"order_ids": ["ok", ""]}),
        ("/v1/orders:process", {"order_ids": []}),
        ("/v1/files:process", {"file_ids": ["hello.txt", "../secret", "/etc/passwd"]}),
    ],
)
async def test_refusals_are_422_with_the_same_violations_as_grpc(
    http: httpx.AsyncClient, http_service: RillServer, url: str, body: dict[str, list[str]]
) -> None:
    response = await http.post(url, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    problem = response.json()
    assert problem["code"] == "INVALID_ARGUMENT"

    method, request_class = GRPC_TWIN[url]
    async with grpc.aio.insecure_channel(http_service.address) as channel:
        call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            method, request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call(request_class(**body).SerializeToString()):
                pytest.fail("refused requests stream nothing")
    expected = [
        {"field": field, "description": description} for field, description in field_violations(raised.value)
    ]
    assert problem["field_violations"] == expected


async def test_malformed_json_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/orders:process", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert [v["field"] for v in response.json()["field_violations"]] == ["request"]


async def test_error_after_streaming_began_is_an_error_event_without_internals(
    gated_http: tuple[httpx.AsyncClient, Probe, CallRegistry],
) -> None:
    client, probe, _ = gated_http
    probe.failing = "boom"
    events = await events_of(client, "POST", "/v1/orders:process", json={"order_ids": ["a", "boom", "c"]})
    assert [e.event for e in events] == ["start", "progress", "error"]
    problem = json.loads(events[-1].data)
    assert problem["code"] == "INTERNAL"
    assert "secret" not in problem["message"]


async def test_unimplemented_unary_maps_to_501(
    gated_http: tuple[httpx.AsyncClient, Probe, CallRegistry],
) -> None:
    client, _, _ = gated_http
    response = await client.get("/v1/orders/x")
    assert response.status_code == 501
    assert response.json()["code"] == "UNIMPLEMENTED"


async def test_keep_alive_comments_flow_while_the_handler_is_silent(
    gated_http: tuple[httpx.AsyncClient, Probe, CallRegistry],
) -> None:
    client, probe, _ = gated_http
    async with client.stream("POST", "/v1/orders:process", json={"order_ids": ["a", "g1"]}) as response:
        lines = response.aiter_lines()
        seen: list[str] = []
        async for line in lines:
            seen.append(line)
            if line.startswith(":"):  # a comment: the keep-alive ping
                assert line == ": ping"
                break
        assert any('"order_id":"a"' in line for line in seen)
        assert probe.produced == ["a"], "the ping came while the handler was still held at g1"
        probe.gate("g1").set()
        rest = [line async for line in lines]
    assert "event: complete" in rest


async def test_disconnect_mid_stream_closes_the_handler_like_a_grpc_cancel(
    gated_http: tuple[httpx.AsyncClient, Probe, CallRegistry],
) -> None:
    client, probe, calls = gated_http
    before = asyncio.all_tasks()
    async with aconnect_sse(
        client, "POST", "/v1/orders:process", json={"order_ids": ["a", "b", "g-never"]}
    ) as source:
        received = []
        async with contextlib.aclosing(source.aiter_sse()) as events:
            async for event in events:
                if event.event == "progress":
                    received.append(json.loads(event.data)["order_id"])
                if len(received) == 2:
                    break
    # Leaving the block closed the connection mid-stream.
    await asyncio.wait_for(probe.finally_ran.wait(), timeout=10)
    assert await calls.wait_idle(10)
    assert received == ["a", "b"]
    assert probe.handled == ["a", "b"], "the events of delivered items were handled"
    # What may remain: uvicorn's own task and the test client's (httpx's) response stream being
    # finalised; the response's own tasks (disconnect listener, keep-alive) have all ended.
    assert not [t for t in stray_tasks(before) if not {"uvicorn", "httpx"} & set(origins(t))]


async def test_openapi_lists_the_routes_with_their_models(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert set(spec["paths"]) == {"/v1/orders:process", "/v1/orders/{order_id}", "/v1/files:process"}
    process = spec["paths"]["/v1/orders:process"]
    assert set(process) == {"post", "get"}
    assert "ProcessOrdersCommand" in json.dumps(process["post"]["requestBody"])
    assert "text/event-stream" in process["post"]["responses"]["200"]["content"]
    assert "OrderView" in json.dumps(spec["paths"]["/v1/orders/{order_id}"]["get"]["responses"]["200"])
    assert (await http.get("/docs")).status_code == 200


async def test_the_page_is_served_at_the_root(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "serverSentEvents" in page.text


async def test_grpc_and_http_share_the_mediators(http: httpx.AsyncClient, http_service: RillServer) -> None:
    await events_of(http, "POST", "/v1/orders:process", json={"order_ids": ["via-http"]})
    async with grpc.aio.insecure_channel(http_service.address) as channel:
        order = await orders_pb2_grpc.OrderServiceStub(channel).GetOrder(
            orders_pb2.GetOrderRequest(order_id="via-http")
        )
    assert order.customer_id == "customer_via-http"
