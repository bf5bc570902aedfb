"""examples/web in a real browser: generated Connect and gRPC-Web clients against the real edge.

The page is served from its own origin and the edge allows it (``Settings.cors``), as a front end
deployed apart from the service would be.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import typing

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from server import RillServer, Settings, create_server
from server.calls import CallRegistry
from server.connect import CorsSettings, connect_edge
from server.http import HttpServer, create_http_app
from tests.browser.test_page import REPO, _require_browser
from tests.server.gated import Probe, fresh_probe, gated_binding

SCRIPT = pathlib.Path(__file__).with_name("connect_page.mjs")
WEB = REPO / "examples" / "web"
PROTOCOLS = ["connect", "connect-proto", "grpc-web"]


async def drive(page_url: str, ids: str, *args: str) -> dict[str, typing.Any]:
    process = await asyncio.create_subprocess_exec(
        _require_browser(),
        str(SCRIPT),
        page_url,
        ids,
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    seen = typing.cast(dict[str, typing.Any], json.loads(stdout.decode().strip().splitlines()[-1]))
    assert seen["errors"] == []
    return seen


@pytest.fixture
async def page_server() -> typing.AsyncIterator[HttpServer]:
    """examples/web (the bundle `make web` builds) on its own origin."""
    if not (WEB / "dist" / "app.js").exists():
        pytest.fail("examples/web/dist/app.js is missing: `make web` (part of `make pytest`) builds it")
    # In a Starlette app, whose error handling answers 404 for what is not there (the favicon).
    site = Starlette(routes=[Mount("/", StaticFiles(directory=WEB, html=True))])
    server = HttpServer(site, "127.0.0.1:0")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def service(server_settings: Settings, page_server: HttpServer) -> typing.AsyncIterator[RillServer]:
    cors = CorsSettings(allow_origins=[f"http://{page_server.address}"])
    server = create_server(server_settings.model_copy(update={"http_address": "127.0.0.1:0", "cors": cors}))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


def page_url(page: HttpServer, edge: str) -> str:
    return f"http://{page.address}/?edge=http://{edge}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_page_streams_every_order_with_a_generated_client(
    page_server: HttpServer, service: RillServer, protocol: str, tmp_path: pathlib.Path
) -> None:
    assert service.http is not None
    screenshot = tmp_path / "page.png"
    seen = await drive(
        page_url(page_server, service.http.address),
        "a b c d e",
        "--protocol",
        protocol,
        "--screenshot",
        str(screenshot),
    )
    assert seen["state"] == "complete"
    assert seen["rows"] == ["a", "b", "c", "d", "e"]
    assert seen["count"] == "5"
    assert seen["first"].endswith(" ms")
    assert screenshot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_refused_request_shows_invalid_argument(
    page_server: HttpServer, service: RillServer, protocol: str
) -> None:
    assert service.http is not None
    seen = await drive(page_url(page_server, service.http.address), f"ok {'x' * 129}", "--protocol", protocol)
    assert seen["state"] == "failed"
    assert seen["rows"] == []
    assert seen["error"].startswith("InvalidArgument: invalid request: order_ids[1]")


@pytest.fixture
async def gated_edge(page_server: HttpServer) -> typing.AsyncIterator[tuple[str, Probe, CallRegistry]]:
    probe = fresh_probe()
    calls = CallRegistry()
    binding = gated_binding()
    cors = CorsSettings(allow_origins=[f"http://{page_server.address}"])
    edge = HttpServer(
        connect_edge(create_http_app([binding], calls), [binding], calls, cors=cors), "127.0.0.1:0"
    )
    await edge.start()
    try:
        yield edge.address, probe, calls
    finally:
        await edge.stop(grace=0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stop_cancels_the_handler_on_the_server(
    page_server: HttpServer, gated_edge: tuple[str, Probe, CallRegistry], protocol: str
) -> None:
    address, probe, calls = gated_edge
    seen = await drive(
        page_url(page_server, address), "a b g-never c", "--protocol", protocol, "--stop-after", "2"
    )
    assert seen["state"] == "stopped"
    assert seen["rows"] == ["a", "b"]
    # On the server: the handler waiting at g-never's gate was cancelled and ran its `finally`,
    # the call ended, and the events of the two delivered items were handled.
    await asyncio.wait_for(probe.finally_ran.wait(), timeout=30)
    assert await calls.wait_idle(30)
    assert probe.handled == ["a", "b"]
    assert probe.produced == ["a", "b"]
