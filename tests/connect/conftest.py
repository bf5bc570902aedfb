"""A real edge on a free port, and an httpx client speaking the protocols by hand (tests/connect/wire.py)."""

from __future__ import annotations

import typing

import httpx
import pytest

from server import RillServer
from server.calls import CallRegistry
from server.connect import connect_edge
from server.http import HttpServer, create_http_app
from tests.server.gated import Probe, fresh_probe, gated_binding

PROCESS = "/orders.v1.OrderService/ProcessOrders"
GET_ORDER = "/orders.v1.OrderService/GetOrder"


@pytest.fixture
async def edge(http_service: RillServer) -> typing.AsyncIterator[httpx.AsyncClient]:
    """The real service's HTTP edge."""
    assert http_service.http is not None
    async with httpx.AsyncClient(base_url=f"http://{http_service.http.address}", timeout=30) as client:
        yield client


@pytest.fixture
async def gated_edge() -> typing.AsyncIterator[tuple[httpx.AsyncClient, Probe, CallRegistry]]:
    """The gated test handlers (tests/server/gated.py) behind Connect and gRPC-Web."""
    probe = fresh_probe()
    calls = CallRegistry()
    binding = gated_binding()
    server = HttpServer(connect_edge(create_http_app([binding], calls), [binding], calls), "127.0.0.1:0")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=30) as client:
            yield client, probe, calls
    finally:
        await server.stop(grace=0)
