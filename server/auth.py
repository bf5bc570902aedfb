"""Optional bearer-token authentication, the same on the gRPC port and the HTTP edge.

With ``Settings.auth_token`` (``RILL_AUTH_TOKEN``) set, every call must carry
``authorization: Bearer <token>`` (gRPC metadata or HTTP header): none is UNAUTHENTICATED (HTTP 401),
a different one PERMISSION_DENIED (403). The health and reflection services stay open, so that probes
and tools work without the secret (turn reflection off with ``RILL_REFLECTION=false``); on the HTTP
edge the page and the API docs stay open (they hold no data, but the page's ``EventSource`` cannot
send a header: with a token set, use the API with the header). Statuses come from
:func:`server.errors.status_for`, like every other failure.
"""

from __future__ import annotations

import hmac
import typing

import grpc
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rill_wire import AUTHORIZATION_KEY, BEARER
from server.calls import REQUEST_ID_KEY, request_id_from
from server.errors import PermissionDenied, ServiceError, Unauthenticated, status_for

__all__ = [
    "OPEN_HTTP_PATHS",
    "OPEN_SERVICES",
    "BearerTokenInterceptor",
    "BearerTokenMiddleware",
    "check_bearer",
]

AUTHORIZATION = AUTHORIZATION_KEY
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})
OPEN_HTTP_PATHS = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


def check_bearer(expected: str, header: str | None) -> ServiceError | None:
    """The error for an ``authorization`` value that does not carry ``expected``, or None if it does."""
    if not header:
        return Unauthenticated("this service needs 'authorization: Bearer <token>'")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != BEARER.lower() or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return PermissionDenied("the bearer token is not valid")
    return None


Handler: typing.TypeAlias = "grpc.RpcMethodHandler[typing.Any, typing.Any]"


def _refusing(handler: Handler, error: ServiceError, request_id: str) -> Handler:
    """A handler of the same kind as ``handler`` that only ends the call with ``error``'s status."""
    status = status_for(error, request_id)

    async def refuse(request: typing.Any, context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> None:
        await context.abort(status.code, status.message, ((REQUEST_ID_KEY, request_id),))

    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse, deserialize, serialize)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, deserialize, serialize)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(refuse, deserialize, serialize)
    return grpc.unary_unary_rpc_method_handler(refuse, deserialize, serialize)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <token>`` (open services excepted)."""

    def __init__(self, token: str, *, open_services: typing.Collection[str] = OPEN_SERVICES) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._token = token
        self._open = frozenset(open_services)

    async def intercept_service(
        self,
        continuation: typing.Callable[[grpc.HandlerCallDetails], typing.Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if handler is None or service in self._open:
            return handler  # None: grpc answers UNIMPLEMENTED
        metadata = dict(handler_call_details.invocation_metadata or ())
        error = check_bearer(self._token, typing.cast(str | None, metadata.get(AUTHORIZATION)))
        if error is None:
            return handler
        request_id = request_id_from(typing.cast(str | None, metadata.get(REQUEST_ID_KEY)))
        return _refusing(handler, error, request_id)


class BearerTokenMiddleware:
    """The HTTP edge's counterpart of :class:`BearerTokenInterceptor` (a pure ASGI middleware)."""

    def __init__(
        self, app: ASGIApp, token: str, *, open_paths: typing.Collection[str] = OPEN_HTTP_PATHS
    ) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self.app = app
        self._token = token
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        error = check_bearer(self._token, headers.get(AUTHORIZATION))
        if error is None:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(headers.get(REQUEST_ID_KEY))
        status = status_for(error, request_id)
        response = JSONResponse(
            status.to_json(),
            status.http_status,
            headers={REQUEST_ID_KEY: request_id, "www-authenticate": "Bearer"},
        )
        await response(scope, receive, send)
