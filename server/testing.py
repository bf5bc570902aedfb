"""Serve bindings in-process for a test, on a free loopback port, built exactly as production builds them.

::

    from server.testing import serving

    async def test_export_rows_streams_every_row() -> None:
        async with serving([report_binding()]) as served:
            stub = reports_pb2_grpc.ReportServiceStub(served.channel)
            rows = [row async for row in stub.ExportRows(request)]

``serving`` goes through :func:`server.create_server`, so the bindings get health, reflection,
metrics, tracing, auth, TLS, limits and the shutdown drain, as under ``python -m server``. Without
``services`` it serves the demo. The server is stopped (and its drains waited for) on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing

import grpc

from mediator.message_brokers.protocol import MessageBroker
from server.app import RillServer, create_server
from server.apps import Services
from server.settings import Settings

__all__ = ["Served", "isolated_settings", "serving"]


@dataclasses.dataclass(frozen=True)
class Served:
    """A running server, where it listens, and a channel to it (closed on exit)."""

    server: RillServer
    address: str
    channel: grpc.aio.Channel
    http_url: str | None


def isolated_settings(
    settings: Settings | None = None, *, http: bool = False, **changes: typing.Any
) -> Settings:
    """``settings`` (else the defaults) on free loopback ports, no grace period, HTTP edge only if asked.

    State stays in memory (``database_url = "memory"``) unless a ``database_url`` or a ``state_dir``
    is given, in ``settings`` or ``changes``: the embedded store's default directory (``./state``)
    would be shared by every test run there, and outlive them.
    """
    base = settings if settings is not None else Settings()
    defaults = Settings.model_fields
    own_store = any(name in changes for name in ("database_url", "state_dir")) or (
        base.database_url != defaults["database_url"].default
        or base.state_dir != defaults["state_dir"].default
    )
    update: dict[str, typing.Any] = {
        "address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0" if http else "",
        "metrics_address": "",
        "grace_period": 0.0,
        **({} if own_store else {"database_url": "memory"}),
        **changes,
    }
    return Settings.model_validate({**base.model_dump(), **update})


@contextlib.asynccontextmanager
async def serving(
    services: Services | None = None,
    settings: Settings | None = None,
    *,
    http: bool = False,
    broker: MessageBroker | None = None,
    **changes: typing.Any,
) -> typing.AsyncIterator[Served]:
    """Run ``services`` (else the demo, with ``broker``) under :func:`isolated_settings` (module docs)."""
    server = create_server(
        isolated_settings(settings, http=http, **changes), services=services, broker=broker
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            http_url = f"http://{server.http.address}" if server.http is not None else None
            yield Served(server, server.address, channel, http_url)
    finally:
        await server.stop()
