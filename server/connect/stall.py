"""The stall timeout (``Settings.limits.stall_timeout``) on Connect and gRPC-Web responses.

A response that waits longer than ``seconds`` for the client to take what was sent (uvicorn's
``send`` waits while the socket's buffers are full) ends: the request's task is cancelled there,
the send raises :class:`ClientStalled` (connectrpc then closes the handler's stream and stops
writing), and the call is recorded RESOURCE_EXHAUSTED (:class:`server.errors.SlowConsumer`), as
on the gRPC port. The client gets no status (it reads nothing); uvicorn closes the connection.

One timer per response, re-armed only when it fires, as :mod:`server.binding` does for gRPC.
"""

from __future__ import annotations

import asyncio
import contextvars
import time

from starlette.types import Message, Send

__all__ = ["CURRENT_WATCH", "ClientStalled", "StallWatch"]


class ClientStalled(Exception):
    """Raised by a send that waited longer than the stall timeout."""


class StallWatch:
    """Watches the sends of the current task's response."""

    __slots__ = ("_handle", "_loop", "_task", "fired", "seconds", "writing_since")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.writing_since: float | None = None
        self.fired = False
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(seconds, self._check)

    def _check(self) -> None:
        since = self.writing_since
        waited = 0.0 if since is None else time.monotonic() - since
        if waited >= self.seconds and self._task is not None:
            self.fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_later(self.seconds - waited, self._check)

    def wrap(self, send: Send) -> Send:
        async def watched(message: Message) -> None:
            self.writing_since = time.monotonic()
            try:
                await send(message)
            except asyncio.CancelledError:
                if not self.fired or self._task is None:
                    raise
                self._task.uncancel()  # the cancellation was ours: it becomes this error
                raise ClientStalled(f"the client took nothing for {self.seconds:g} s") from None
            finally:
                self.writing_since = None

        return watched

    def close(self) -> None:
        self._handle.cancel()


CURRENT_WATCH: contextvars.ContextVar[StallWatch | None] = contextvars.ContextVar(
    "rill_connect_stall_watch", default=None
)
"""The watch of the response being served in this task (read by the call scope)."""
