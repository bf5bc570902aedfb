"""The stall timeout (``Settings.limits.stall_timeout``) on Connect and gRPC-Web responses.

A response that waits longer than ``seconds`` for the client to take what was sent (uvicorn's
``send`` waits while the socket's buffers are full) ends: the request's task is cancelled there,
the send raises :class:`ClientStalled` (connectrpc then closes the handler's stream and stops
writing), and the call is recorded RESOURCE_EXHAUSTED (:class:`server.errors.SlowConsumer`), as
on the gRPC port. The client gets no status (it reads nothing); uvicorn closes the connection.

One timer per response (:mod:`server.stall`), as for gRPC.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import typing

from starlette.types import Message, Send

from server.stall import StallTimer

__all__ = ["CURRENT_WATCH", "ClientStalled", "StallWatch"]


class ClientStalled(Exception):
    """Raised by a send that waited longer than the stall timeout."""


class StallWatch:
    """Watches the sends of the current task's response (a :class:`server.stall.StallTimer` that
    cancels the task; the cancelled send raises :class:`ClientStalled`)."""

    __slots__ = ("_task", "_timer", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._task = typing.cast("asyncio.Task[typing.Any]", asyncio.current_task())
        self._timer = StallTimer(seconds, self._task.cancel)

    @property
    def fired(self) -> bool:
        return self._timer.fired

    def wrap(self, send: Send) -> Send:
        async def watched(message: Message) -> None:
            self._timer.writing_since = time.monotonic()
            try:
                await send(message)
            except asyncio.CancelledError:
                if not self._timer.fired:
                    raise
                self._task.uncancel()  # the cancellation was ours: it becomes this error
                raise ClientStalled(f"the client took nothing for {self.seconds:g} s") from None
            finally:
                self._timer.writing_since = None

        return watched

    def close(self) -> None:
        self._timer.close()


CURRENT_WATCH: contextvars.ContextVar[StallWatch | None] = contextvars.ContextVar(
    "rill_connect_stall_watch", default=None
)
"""The watch of the response being served in this task (read by the call scope)."""
