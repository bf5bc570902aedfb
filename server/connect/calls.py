"""One Connect or gRPC-Web call from its first line to its outcome: the edge's
:class:`server.calls.CallScope`.

The call is tracked by the server's :class:`server.calls.CallRegistry` (counted for the drain,
measured, traced, logged once) and current while it runs, its request id is the caller's
``x-request-id`` (or a new one) and goes back in the response headers, and whatever ends it becomes
its outcome: an exception becomes its status through :func:`server.errors.status_for` and is raised
as a ``ConnectError``; a cancellation (the client went away, or its deadline) or an abandoned stream
is CANCELLED.
"""

from __future__ import annotations

import asyncio
import types
import typing

from connectrpc.request import RequestContext

from server.calls import REQUEST_ID_KEY, CallRegistry, CallScope, request_id_from
from server.connect.errors import connect_error
from server.connect.stall import CURRENT_WATCH
from server.errors import SlowConsumer

__all__ = ["ConnectCallScope", "transport_of"]


def transport_of(context: RequestContext[typing.Any, typing.Any]) -> str:
    """The metrics' and traces' ``transport`` label: ``grpc-web`` or ``connect``."""
    content_type = context.request_headers.get("content-type", "")
    return "grpc-web" if content_type.startswith("application/grpc-web") else "connect"


class ConnectCallScope(CallScope):
    """``with ConnectCallScope(calls, path, context) as call: ...`` around one call's work."""

    __slots__ = ()

    def __init__(
        self, calls: CallRegistry, method: str, context: RequestContext[typing.Any, typing.Any]
    ) -> None:
        headers = context.request_headers
        request_id = request_id_from(headers.get(REQUEST_ID_KEY))
        carrier = dict(headers) if calls.tracing is not None else None
        super().__init__(calls, method, request_id, transport=transport_of(context), carrier=carrier)
        context.response_headers[REQUEST_ID_KEY] = request_id

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        call = self.call
        try:
            self._leave()
            if error is None:
                call.succeeded()
            elif isinstance(error, asyncio.CancelledError | GeneratorExit):
                # GeneratorExit: connectrpc closed the stream early, which it does when a send
                # failed: the client went away, or took nothing for the stall timeout.
                watch = CURRENT_WATCH.get()
                if watch is not None and watch.fired:
                    call.failed(SlowConsumer(f"the client took no item for {watch.seconds:g} s"))
                else:
                    call.cancelled()
            elif isinstance(error, Exception):
                raise connect_error(call.failed(error)) from None
        finally:
            self._calls._finish(call)
