"""One Server-Sent Events stream of a mediator stream: the response that owns the call, end to end.

:class:`SseStream` is what a streaming endpoint returns. When the server runs it, it opens the call
(counted, traced, logged: :mod:`server.calls`), opens the mediator stream, takes its first step
(a refusal before the first item is still an HTTP status), then sends ``start``, one ``progress``
per item, and ``complete`` or ``error``. Everything it starts ends before it returns: the disconnect
listener and the keep-alive task are cancelled and awaited, and the mediator stream is closed here,
in this task, while the call is still counted (its handler's ``finally`` runs, the events of
delivered items are handled), whatever ended the response.

Three things end a stream early, as they end a gRPC stream:

- the client leaves: the listener sees ``http.disconnect`` and cancels the stream at once, wherever
  it is waiting (in the handler, or on the socket); the call ends CANCELLED;
- the client stops reading: a write that waits longer than ``stall_timeout`` for the socket ends
  the call RESOURCE_EXHAUSTED (:class:`server.errors.SlowConsumer`) and closes the connection;
- the server stops: uvicorn cancels the response after its grace.

Between items the stream yields to the event loop once. A socket that takes every write never
suspends the sender, so without it one fast stream held the loop until its last item: no disconnect
was noticed and no gRPC call or health check was served meanwhile (issue 15).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import typing

from sse_starlette import ServerSentEvent
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from mediator import Response as MediatorResponse
from server.calls import REQUEST_ID_KEY, Call
from server.errors import SlowConsumer, Status
from server.http.protocol import CLOSE_CONNECTION
from server.stall import StallTimer

__all__ = ["SseStream"]

_END: typing.Any = object()

_LEFT = "the client left"
_STALLED = "the client stopped reading"


def error_response(status: Status, request_id: str) -> JSONResponse:
    """The documented error body (``{"code", "message", "field_violations"}``) with its HTTP status."""
    return JSONResponse(status.to_json(), status.http_status, headers={REQUEST_ID_KEY: request_id})


class _Guard:
    """Ends the stream it guards when the client leaves or stalls, by expiring its cancel scope.

    ``asyncio.timeout`` is the scope: expiring it cancels this task once, wherever it waits, and its
    exit turns exactly that cancellation into ``TimeoutError`` (any other cancellation propagates).
    The listener task and the stall timer are owned here and stopped on exit.
    """

    def __init__(self, receive: Receive, stall_timeout: float | None) -> None:
        self._reason: str | None = None
        self._receive = receive
        self._stall_timeout = stall_timeout
        self._scope = asyncio.timeout(None)
        self._listener: asyncio.Task[None] | None = None
        self.stall: StallTimer | None = None  # the stream's writes set its writing_since
        self._entered = False

    @property
    def ended_by(self) -> str | None:
        """Why the guard ended the stream (its ``TimeoutError``), or None if it did not."""
        return self._reason if self._scope.expired() else None

    async def __aenter__(self) -> _Guard:
        await self._scope.__aenter__()
        self._entered = True
        self._listener = asyncio.create_task(self._listen(), name="rill-http-disconnect")
        if self._stall_timeout is not None:
            self.stall = StallTimer(self._stall_timeout, lambda: self._end(_STALLED))
        return self

    async def __aexit__(self, *exc_info: typing.Any) -> bool | None:
        if self.stall is not None:
            self.stall.close()
        await self.stop_listening()
        self._entered = False
        await self._scope.__aexit__(*exc_info)
        return None

    async def stop_listening(self) -> None:
        """Before the response's last message: its end is not a disconnect (the stall watch stays)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        while True:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                self._end(_LEFT)
                return

    def _end(self, reason: str) -> None:
        if self._entered and self._reason is None:
            self._reason = reason
            self._scope.reschedule(asyncio.get_running_loop().time())


class _Writer:
    """Writes the stream's chunks, and keep-alive comments while the handler is silent."""

    def __init__(self, send: Send, guard: _Guard, ping: float) -> None:
        self._send = send
        self._guard = guard
        self._ping = ping
        self._lock = asyncio.Lock()  # the pinger and the stream never interleave inside a write
        self._last = time.monotonic()

    async def write(self, event: ServerSentEvent | None) -> None:
        """Send ``event`` (None: the end of the response), timed by the guard's stall watch."""
        body, more = (event.encode(), True) if event is not None else (b"", False)
        async with self._lock:
            stall = self._guard.stall
            since = time.monotonic()
            if stall is not None:
                stall.writing_since = since
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
            if stall is not None:
                stall.writing_since = None
            self._last = since

    @contextlib.asynccontextmanager
    async def pinging(self) -> typing.AsyncIterator[None]:
        pinger = asyncio.create_task(self._keep_alive(), name="rill-http-ping")
        try:
            yield
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self._last + self._ping - time.monotonic()))
            if time.monotonic() - self._last >= self._ping:
                await self.write(ServerSentEvent(comment="ping"))


class SseStream(Response):
    """The SSE response of one streaming call (see the module's docstring)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        open_stream: typing.Callable[[], typing.AsyncGenerator[MediatorResponse, None]],
        track: typing.Callable[[], typing.ContextManager[Call]],
        request_id: str,
        *,
        ping: float,
        stall_timeout: float | None,
    ) -> None:
        self._open_stream = open_stream
        self._track = track
        self._ping = ping
        self._stall_timeout = stall_timeout
        self.status_code = 200
        self.background = None
        # What sse-starlette's EventSourceResponse sends too: no caching, no proxy buffering.
        self.init_headers(
            {REQUEST_ID_KEY: request_id, "cache-control": "no-store", "x-accel-buffering": "no"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._track() as call:  # current: event-handler runs take its context too
            guard = _Guard(receive, self._stall_timeout)
            stream: typing.AsyncGenerator[MediatorResponse, None] | None = None
            started = False
            try:
                async with guard:
                    stream = self._open_stream()
                    first = await anext(stream, _END)
                    await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                    started = True
                    await self._events(first, stream, call, guard, send)
            except Exception as error:
                ended_by = guard.ended_by if isinstance(error, TimeoutError) else None
                if ended_by is _LEFT:
                    call.cancelled()
                elif ended_by is _STALLED:
                    call.failed(
                        SlowConsumer(f"{_STALLED} for {self._stall_timeout:g} s ({call.items} items)")
                    )
                    # The socket takes nothing more: the response cannot be finished, only cut.
                    close_connection = scope.get("extensions", {}).get(CLOSE_CONNECTION)
                    if close_connection is not None:
                        close_connection()
                else:  # raised before the first item: an HTTP status
                    status = call.failed(error)
                    if not started:
                        await error_response(status, call.request_id)(scope, receive, send)
            except BaseException:
                call.cancelled()
                raise
            finally:
                if stream is not None:
                    await stream.aclose()  # here, while the call is counted: the handler's finally, the drain

    async def _events(
        self,
        item: typing.Any,
        stream: typing.AsyncGenerator[MediatorResponse, None],
        call: Call,
        guard: _Guard,
        send: Send,
    ) -> None:
        writer = _Writer(send, guard, self._ping)
        async with writer.pinging():
            start = {"message": "Processing...", "request_id": call.request_id}
            await writer.write(ServerSentEvent(event="start", data=json.dumps(start)))
            while item is not _END:
                since = time.monotonic()
                await writer.write(
                    ServerSentEvent(event="progress", id=str(call.items), data=item.model_dump_json())
                )
                call.sent(since)
                # Let the loop run once between items (see the module's docstring).
                await asyncio.sleep(0)
                try:
                    item = await anext(stream, _END)
                except Exception as error:  # after the first item: reported in the stream, then it ends
                    status = call.failed(error)
                    await writer.write(ServerSentEvent(event="error", data=json.dumps(status.to_json())))
                    break
            else:
                call.succeeded()
                complete = json.dumps({"items": call.items})
                await writer.write(ServerSentEvent(event="complete", id=str(call.items), data=complete))
        await guard.stop_listening()
        await writer.write(None)
