"""grpc.health.v1 for rill: grpc's own servicer, except that a Watch ends when the server stops.

grpc_health's asyncio servicer keeps every ``Watch`` stream open for ever: at shutdown it sends
NOT_SERVING and goes on waiting, so one load balancer or kubelet watching held ``stop(grace)`` for
the whole grace period. Here a watcher is told NOT_SERVING, then its stream ends OK; it reconnects
elsewhere (the health protocol expects a watch to end when its server goes away).
"""

from __future__ import annotations

import asyncio
import collections.abc
import typing

import grpc
from grpc_health.v1 import health, health_pb2

__all__ = ["HealthServicer"]

_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health.aio.HealthServicer):
    # grpc_health's own state, which its stubs do not declare.
    _server_status: collections.abc.MutableMapping[str, int]  # ServingStatus values
    _server_watchers: collections.abc.MutableMapping[str, asyncio.Condition]
    _watcher_count_by_service: collections.abc.MutableMapping[str, int]
    _gracefully_shutting_down: bool

    # The loop is grpc_health's own (grpcio-health-checking 1.x keeps these attributes), with the one
    # difference: once the server is shutting down, the status just written is the last.
    async def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[typing.Any, typing.Any],
    ) -> None:
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        last_status = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(service, _UNKNOWN)
                    if status != last_status:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                    last_status = status
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]
