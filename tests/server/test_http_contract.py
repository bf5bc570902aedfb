"""What the HTTP edge promises in its headers, its documents and its refusals, seen by a real client.

The server is the demo as production builds it (``server.testing.serving``), the client httpx: the
request id followed end to end, the SSE response's headers, the OpenAPI
document, the page's routes, the body limit at its exact boundary, and the settings of the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing

import httpx
import pydantic
import pytest
from httpx_sse import aconnect_sse

from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from server.http.limits import HttpLimitSettings
from server.settings import Settings
from server.testing import Served, serving
from tests.server.gated import fresh_probe, gated_binding
from tests.server.test_http_limits import warnings_of

RID = "x-request-id"


@pytest.fixture
async def served() -> typing.AsyncIterator[Served]:
    async with serving(http=True) as served:
        yield served


@pytest.fixture
async def http(served: Served) -> typing.AsyncIterator[httpx.AsyncClient]:
    assert served.http_url is not None
    async with httpx.AsyncClient(base_url=served.http_url, timeout=30) as client:
        yield client


async def test_a_stream_carries_the_callers_request_id_and_is_neither_cached_nor_buffered(
    http: httpx.AsyncClient,
) -> None:
    async with aconnect_sse(
        http, "POST", "/v1/orders:process", json={"order_ids": ["a"]}, headers={RID: "trace-me-1"}
    ) as source:
        headers = source.response.headers
        events = [event async for event in source.aiter_sse()]
    assert headers[RID] == "trace-me-1"
    assert headers["cache-control"] == "no-store"
    assert headers["x-accel-buffering"] == "no"
    assert [e.event for e in events] == ["start", "progress", "complete"]
    assert json.loads(events[0].data) == {"message": "Processing...", "request_id": "trace-me-1"}
    assert events[-1].id == "1"
    # Nothing after the last frame (a client's parser would take stray bytes for the next one).
    raw = await http.post("/v1/orders:process", json={"order_ids": ["a"]})
    assert raw.text.endswith('\r\n\r\nid: 1\r\nevent: complete\r\ndata: {"items": 1}\r\n\r\n')


async def test_json_answers_and_refusals_carry_the_callers_request_id(http: httpx.AsyncClient) -> None:
    found = await http.post("/v1/orders:process", json={"order_ids": ["a"]})
    assert found.status_code == 200
    order = await http.get("/v1/orders/a", headers={RID: "unary-1"})
    assert order.status_code == 200
    assert order.headers[RID] == "unary-1"
    missing = await http.get("/v1/orders/nobody", headers={RID: "unary-2"})
    assert (missing.status_code, missing.headers[RID]) == (404, "unary-2")
    refused = await http.post("/v1/orders:process", json={"order_ids": []}, headers={RID: "refused-1"})
    assert (refused.status_code, refused.headers[RID]) == (422, "refused-1")
    routed = await http.get("/v1/nothing-here", headers={RID: "router-1"})
    assert (routed.status_code, routed.headers[RID]) == (404, "router-1")


async def test_a_wrong_method_is_405_with_the_allowed_methods(http: httpx.AsyncClient) -> None:
    response = await http.delete("/v1/orders:process")
    assert response.status_code == 405
    # Starlette names the methods of the first route that matched the path (POST), not of all.
    assert "POST" in response.headers["allow"]
    assert response.json()["code"] == "UNIMPLEMENTED"


async def test_the_openapi_document_names_each_rpc_and_describes_the_stream(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert spec["info"]["title"] == "rill: orders.v1.OrderService, files.v1.FileService"
    assert "Server-Sent Events" in spec["info"]["description"]
    post = spec["paths"]["/v1/orders:process"]["post"]
    assert post["summary"] == "OrderService.ProcessOrders"
    assert post["tags"] == ["orders.v1.OrderService"]
    assert "`OrderProcessedResult`" in post["description"]
    assert "OrderProcessedResult" in json.dumps(post["responses"]["200"]["content"]["text/event-stream"])
    get = spec["paths"]["/v1/orders/{order_id}"]["get"]
    assert get["summary"] == "OrderService.GetOrder"
    assert "description" not in get
    operations = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(set(operations)) == len(operations), "each binding its own operation"


async def test_the_page_offers_each_services_post_stream_once(http: httpx.AsyncClient) -> None:
    page = (await http.get("/")).text
    assert "<title>rill: orders.v1.OrderService, files.v1.FileService</title>" in page
    routes = json.loads(
        page.split('<script id="routes" type="application/json">', 1)[1].split("</script>")[0]
    )
    assert routes == [
        {
            "key": "orders",
            "label": "OrderService: ProcessOrders",
            "path": "/v1/orders:process",
            "field": "order_ids",
            "id": "order_id",
        },
        {
            "key": "files",
            "label": "FileService: ProcessFiles",
            "path": "/v1/files:process",
            "field": "file_ids",
            "id": "file_id",
        },
    ]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(
    chunked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 1024
    async with serving(http=True, limits={"max_receive_message_bytes": limit}) as served:
        assert served.http_url is not None
        async with httpx.AsyncClient(base_url=served.http_url, timeout=30) as http:

            async def post(size: int) -> httpx.Response:
                ids = json.dumps({"order_ids": ["a"]})
                body = (ids[:-1] + " " * (size - len(ids)) + "}").encode()
                assert len(body) == size

                async def chunks() -> typing.AsyncIterator[bytes]:
                    yield body[: size // 2]
                    yield body[size // 2 :]

                content: typing.Any = chunks() if chunked else body
                headers = {"content-type": "application/json", RID: f"body-{size}"}
                return await http.post("/v1/orders:process", content=content, headers=headers)

            at_limit = await post(limit)
            assert at_limit.status_code == 200
            assert "event: complete" in at_limit.text
            over = await post(limit + 1)
    assert over.status_code == 413
    assert over.headers[RID] == f"body-{limit + 1}"
    assert over.json() == {
        "code": "RESOURCE_EXHAUSTED",
        "message": f"the request body is larger than {limit} bytes",
    }
    # The operator's line: how much (at least, when no length was declared), where, which request.
    size = f"at least {limit + 1}" if chunked else f"{limit + 1}"
    assert warnings_of(caplog) == [
        f"refused a request body of {size} bytes on /v1/orders:process "
        f"(limits.max_receive_message_bytes={limit}, request id body-{limit + 1})"
    ]


def test_the_http_limits_default_to_the_documented_values_and_refuse_nonsense(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert HttpLimitSettings().model_dump() == {
        "max_connections": 512,
        "header_timeout": 10.0,
        "body_timeout": 30.0,
        "keep_alive_timeout": 5,
    }
    monkeypatch.setenv("RILL_HTTP_LIMITS__MAX_CONNECTIONS", "1")
    monkeypatch.setenv("RILL_HTTP_LIMITS__BODY_TIMEOUT", "0.5")
    limits = Settings().http_limits
    assert (limits.max_connections, limits.body_timeout) == (1, 0.5)
    for wrong in (
        {"max_connections": 0},
        {"header_timeout": 0},
        {"body_timeout": 0},
        {"keep_alive_timeout": 0},
        {"keep_alive": 5},
    ):
        with pytest.raises(pydantic.ValidationError):
            HttpLimitSettings.model_validate(wrong)


async def test_stopping_the_edge_ends_a_stream_in_progress_within_its_grace() -> None:
    probe = fresh_probe()
    server = HttpServer(create_http_app([gated_binding()], CallRegistry()), "127.0.0.1:0")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=30) as http:
            async with http.stream(
                "POST", "/v1/orders:process", json={"order_ids": ["a", "g-never"]}
            ) as held:
                lines = held.aiter_lines()
                async for line in lines:
                    if '"order_id":"a"' in line:
                        break
                # Bounded as a hang guard: with no grace the stream is cancelled at once.
                await asyncio.wait_for(server.stop(grace=0), timeout=30)
                await asyncio.wait_for(probe.finally_ran.wait(), timeout=30)
                with contextlib.suppress(httpx.HTTPError):  # cut: the client sees the end or an error
                    rest = [line async for line in lines]
                    assert "event: complete" not in rest
            assert server.connections == 0
    finally:
        await server.stop(grace=0)
