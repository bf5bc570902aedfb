"""The Connect and gRPC-Web edge: every bound RPC at its gRPC path on the HTTP edge.

``connect_edge(app, bindings, calls, ...)`` wraps the HTTP edge's ASGI app: a request for an RPC's
path (``POST /orders.v1.OrderService/ProcessOrders``, and Connect's ``GET`` for unary RPCs) goes to
connectrpc's ASGI application (Connect with JSON or binary protobuf, gRPC-Web binary, and gRPC-Web
text through :class:`GrpcWebTextMiddleware`); everything else goes to ``app``. With
``Settings.cors`` origins, the whole edge answers CORS preflights and exposes the headers that
Connect and gRPC-Web clients read (starlette's ``CORSMiddleware``).

Plain gRPC (``application/grpc``) needs HTTP/2 trailers, which uvicorn does not serve: it is
refused with 415 here, and served on the gRPC port.
"""

from __future__ import annotations

import typing

from connectrpc.interceptor import Interceptor
from connectrpc.server import ConnectASGIApplication, Endpoint
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.binding import ServiceBinding
from server.calls import REQUEST_ID_KEY, CallRegistry
from server.connect.auth import BearerTokenCheck
from server.connect.codecs import codecs
from server.connect.endpoints import endpoints_of
from server.connect.grpc_web_text import GrpcWebTextMiddleware, is_grpc_web_text
from server.connect.settings import CorsSettings
from server.connect.stall import CURRENT_WATCH, ClientStalled, StallWatch
from server.limits import LimitSettings

__all__ = ["ConnectEdge", "connect_edge"]

# What Connect and gRPC-Web clients send and read (connectrpc.com/cors's lists), and ours.
ALLOWED_HEADERS = [
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "authorization",
    REQUEST_ID_KEY,
    "traceparent",
    "tracestate",
]
EXPOSED_HEADERS = ["grpc-status", "grpc-message", "grpc-status-details-bin", REQUEST_ID_KEY]


class _Application(ConnectASGIApplication[None]):
    """connectrpc's ASGI application over endpoints made from bindings (no generated service)."""

    def __init__(self, endpoints: dict[str, Endpoint[typing.Any, typing.Any]], **options: typing.Any) -> None:
        # connectrpc types the mapping with its private endpoint classes; ours are made by the
        # public Endpoint.unary / Endpoint.server_stream, which return exactly those.
        resolved: typing.Any = endpoints
        super().__init__(service=None, endpoints=lambda _service: resolved, **options)

    @property
    def path(self) -> str:
        return "/"


class ConnectEdge:
    """Sends the RPCs' paths to connectrpc, everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        bindings: typing.Sequence[ServiceBinding],
        calls: CallRegistry,
        *,
        token: str = "",
        read_max_bytes: int | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        self._stall_timeout = stall_timeout
        endpoints = endpoints_of(bindings, calls)
        self.paths = frozenset(endpoints)
        interceptors: list[Interceptor] = [BearerTokenCheck(token)] if token else []
        options: dict[str, typing.Any] = {"interceptors": interceptors, "codecs": codecs()}
        if read_max_bytes is not None:
            options["read_max_bytes"] = read_max_bytes
        self._connect = _Application(endpoints, **options)
        self._text = GrpcWebTextMiddleware(self._connect)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        content_type = ""
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1").lower()
                break
        if content_type == "application/grpc" or content_type.startswith("application/grpc+"):
            response = PlainTextResponse("gRPC over HTTP/2 is served on the gRPC port", 415)
            await response(scope, receive, send)
            return
        app = self._text if is_grpc_web_text(content_type) else self._connect
        if self._stall_timeout is None:
            await app(scope, receive, send)
            return
        watch = StallWatch(self._stall_timeout)
        token = CURRENT_WATCH.set(watch)
        try:
            await app(scope, receive, watch.wrap(send))
        except ClientStalled:
            pass  # the response cannot be finished: uvicorn closes the connection
        finally:
            watch.close()
            CURRENT_WATCH.reset(token)


def connect_edge(
    app: ASGIApp,
    bindings: typing.Sequence[ServiceBinding],
    calls: CallRegistry,
    *,
    token: str = "",
    limits: LimitSettings | None = None,
    cors: CorsSettings | None = None,
) -> ASGIApp:
    """``app`` with Connect and gRPC-Web for every RPC of ``bindings``, and CORS if configured.

    ``token``: calls need ``authorization: Bearer <token>``. ``limits``: larger request messages
    than ``max_receive_message_bytes`` are refused RESOURCE_EXHAUSTED, and a response that waits
    ``stall_timeout`` for its client ends (:mod:`server.connect.stall`).
    """
    edge: ASGIApp = ConnectEdge(
        app,
        bindings,
        calls,
        token=token,
        read_max_bytes=limits.max_receive_message_bytes if limits is not None else None,
        stall_timeout=limits.stall_timeout if limits is not None else None,
    )
    if cors is not None and cors.enabled:
        edge = CORSMiddleware(
            edge,
            allow_origins=cors.allow_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=cors.allow_credentials,
            max_age=cors.max_age,
        )
    return edge
