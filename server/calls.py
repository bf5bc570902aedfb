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

from server.errors import status_for

__all__ = ["Call", "CallRegistry"]

logger = logging.getLogger("server.calls")

REQUEST_ID_KEY = "x-request-id"


class Call:
    """One RPC in flight."""

    __slots__ = ("items", "method", "request_id", "started")

    def __init__(self, method: str, request_id: str) -> None:
        self.method = method
        self.request_id = request_id
        self.items = 0
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _request_id(context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class CallRegistry:
    """Counts the calls in flight; ``wait_idle`` lets shutdown wait for them."""

    def __init__(self) -> None:
        self.active = 0
        self._idle: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def open(
        self, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> typing.AsyncIterator[Call]:
        call = Call(method, _request_id(context))
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
        self.active += 1
        try:
            yield call
        except asyncio.CancelledError:
            # The client went away, its deadline passed, or the server stopped: nobody hears a status.
            logger.info(
                "%s cancelled after %d items, %.3f s (request id %s)",
                method,
                call.items,
                call.elapsed,
                call.request_id,
            )
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            status = status_for(error, call.request_id)
            if status.expected:
                logger.info(
                    "%s %s after %d items: %s (request id %s)",
                    method,
                    status.code.name,
                    call.items,
                    status.message,
                    call.request_id,
                )
            else:
                logger.error(
                    "%s failed after %d items (request id %s)",
                    method,
                    call.items,
                    call.request_id,
                    exc_info=error,
                )
            rich = rpc_status.to_status(status.to_rpc_status())
            await context.abort(
                rich.code, rich.details, (*rich.trailing_metadata, (REQUEST_ID_KEY, call.request_id))
            )
        else:
            logger.info(
                "%s OK, %d items, %.3f s (request id %s)", method, call.items, call.elapsed, call.request_id
            )
        finally:
            self.active -= 1
            if self.active == 0 and self._idle is not None:
                self._idle.set()

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
