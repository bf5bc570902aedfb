"""grpc.health.v1 at shutdown: a watcher is told NOT_SERVING, then its stream ends and frees the stop."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2

from server.testing import serving
from tests.typed_grpc import health_stub, read

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_an_open_watch_does_not_hold_the_stop_for_the_grace_period() -> None:
    async with serving() as served:
        health = health_stub(served.channel)
        overall = health.Watch(health_pb2.HealthCheckRequest(service=""))
        orders = health.Watch(health_pb2.HealthCheckRequest(service="orders.v1.OrderService"))
        for watch in (overall, orders):
            assert (await read(watch)).status == SERVING
        # A grace period nothing else would end: only the watches are open, and they must end.
        stopping = asyncio.create_task(served.server.stop(grace=3600))
        for watch in (overall, orders):
            assert (await read(watch)).status == NOT_SERVING
            assert await watch.read() is grpc.aio.EOF
            assert await watch.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, timeout=60)  # a bound far below the grace, not a timing claim
