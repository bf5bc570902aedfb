"""The request-body limit of the HTTP edge: the gRPC receive limit, answered 413 without reading on.

A declared ``content-length`` over the limit is refused before one byte of the body is read; a
chunked body is read only up to the limit. Either way the answer is 413 with the documented error
body, sent at once. The rest of the body is then discarded as it arrives, never held (uvicorn drops
the data of a request already answered), for at most ``http_limits.body_timeout``
(:mod:`server.http.protocol`): a connection closed at once would reset a client still sending,
and it would never read its 413. Within the limit the body is read here, once, and handed to the
application as one message; later ``receive()`` calls go to the server (they report the client's
disconnect).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.calls import REQUEST_ID_KEY, request_id_from
from server.http.problems import problem_response

__all__ = ["BodyLimitMiddleware"]

logger = logging.getLogger("server.http")


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses request bodies larger than ``max_bytes`` with 413 (a pure ASGI middleware)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_bytes:
                raise _TooLarge(declared)
            body = await self._read(receive)
        except _TooLarge as error:
            await self._refuse(scope, receive, send, error.args[0])
            return
        if body is None:  # the client left (or was closed: body_timeout) while sending it
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        request_id = request_id_from(headers.get(REQUEST_ID_KEY))
        logger.warning(
            "refused a request body of %s%d bytes on %s (limits.max_receive_message_bytes=%d, request id %s)",
            "at least " if _content_length(scope) is None else "",
            size,
            scope["path"],
            self.max_bytes,
            request_id,
        )
        message = f"the request body is larger than {self.max_bytes} bytes"
        response = problem_response(413, message, request_id)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
