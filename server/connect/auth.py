"""The bearer token on Connect and gRPC-Web calls, refused in the protocol's own error shape.

The same check as the gRPC port's and the SSE routes' (:func:`server.auth.check_bearer`), run by
connectrpc before the request body is read; the refusal's status comes from
:func:`server.errors.status_for` and reaches the client as a Connect or gRPC-Web error.
"""

from __future__ import annotations

import typing

from connectrpc.request import RequestContext

from server.auth import AUTHORIZATION, check_bearer
from server.calls import REQUEST_ID_KEY, request_id_from
from server.connect.errors import connect_error
from server.errors import status_for

__all__ = ["BearerTokenCheck"]


class BearerTokenCheck:
    """A connectrpc ``MetadataInterceptor``: every call needs ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._token = token

    async def on_start(self, ctx: RequestContext[typing.Any, typing.Any]) -> None:
        headers = ctx.request_headers
        error = check_bearer(self._token, headers.get(AUTHORIZATION))
        if error is not None:
            request_id = request_id_from(headers.get(REQUEST_ID_KEY))
            ctx.response_headers[REQUEST_ID_KEY] = request_id
            raise connect_error(status_for(error, request_id))

    async def on_end(
        self, token: None, ctx: RequestContext[typing.Any, typing.Any], error: Exception | None
    ) -> None:
        return None
