"""Calls in flight: request ids, the end-of-call log line, error statuses, and the drain.

Every RPC runs inside ``CallRegistry.open``: it gets a request id (the caller's ``x-request-id``
metadata, or a new one, echoed in the trailing metadata), is counted while it runs so that shutdown
can wait for it, and turns any exception into a status through :func:`server.errors.status_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing
import uuid

import grpc
from grpc_status import rpc_status

from server.errors import Status, status_for

__all__ = ["REQUEST_ID_KEY", "Call", "CallRegistry", "request_id_from"]

logger = logging.getLogger("server.calls")

REQUEST_ID_KEY = "x-request-id"


class Call:
    """One call in flight, over gRPC or HTTP."""

    __slots__ = ("items", "method", "request_id", "started")

    def __init__(self, method: str, request_id: str) -> None:
        self.method = method
        self.request_id = request_id
        self.items = 0
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def cancelled(self) -> None:
        # The client went away, its deadline passed, or the server stopped: nobody hears a status.
        logger.info(
            "%s cancelled after %d items, %.3f s (request id %s)",
            self.method,
            self.items,
            self.elapsed,
            self.request_id,
        )

    def failed(self, error: Exception) -> Status:
        """The status the caller gets for ``error``, logged (with the traceback if unexpected)."""
        status = status_for(error, self.request_id)
        if status.expected:
            logger.info(
                "%s %s after %d items: %s (request id %s)",
                self.method,
                status.code.name,
                self.items,
                status.message,
                self.request_id,
            )
        else:
            logger.error(
                "%s failed after %d items (request id %s)",
                self.method,
                self.items,
                self.request_id,
                exc_info=error,
            )
        return status

    def succeeded(self) -> None:
        logger.info(
            "%s OK, %d items, %.3f s (request id %s)", self.method, self.items, self.elapsed, self.request_id
        )


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sensible one, else a new one."""
    if value and len(value) <= 128 and value.isprintable():
        return value
    return uuid.uuid4().hex


def _grpc_request_id(context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return request_id_from(value)
    return request_id_from(None)


class CallRegistry:
    """Counts the calls in flight over both transports; ``wait_idle`` lets shutdown wait for them."""

    def __init__(self) -> None:
        self.active = 0
        self._idle: asyncio.Event | None = None

    @contextlib.contextmanager
    def track(self, method: str, request_id: str) -> typing.Iterator[Call]:
        """Count a call while it runs (the transport reports its outcome on the :class:`Call`)."""
        self.active += 1
        try:
            yield Call(method, request_id)
        finally:
            self.active -= 1
            if self.active == 0 and self._idle is not None:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def open(
        self, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> typing.AsyncIterator[Call]:
        """A gRPC call: tracked, its request id echoed, any exception turned into its status."""
        with self.track(method, _grpc_request_id(context)) as call:
            context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
            try:
                yield call
            except asyncio.CancelledError:
                call.cancelled()
                raise
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                rich = rpc_status.to_status(call.failed(error).to_rpc_status())
                await context.abort(
                    rich.code, rich.details, (*rich.trailing_metadata, (REQUEST_ID_KEY, call.request_id))
                )
            else:
                call.succeeded()

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, not a cancel scope
        """Wait until no call is in flight (at most ``timeout`` s); whether that happened."""
        if self.active == 0:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._idle = None
