"""One logical call: its attempts (deadline, retry, backoff) and, for streams, its responses.

A call is retried only on UNAVAILABLE and only while nothing was received: once a stream has
delivered an item, trying again would deliver it twice, so the error goes to the caller instead.
The deadline (``timeout``) covers the whole call, retries and backoff included.
"""

from __future__ import annotations

import asyncio
import time
import types
import typing

import grpc

from client._options import RetryPolicy
from client.exceptions import RillError, error_for, from_rpc_error

__all__ = ["Attempts", "OnRetry", "ResponseStream", "unary_call"]

T_co = typing.TypeVar("T_co", covariant=True)

OnRetry: typing.TypeAlias = typing.Callable[[int, RillError, float], None]
"""Told ``(attempt about to start, the error that ended the previous one, seconds of backoff)``."""

_EOF = grpc.aio.EOF  # what read() returns at the end of a stream; looked up once, not per message


class Attempts:
    """The attempts of one call: how much time is left, and whether (and when) to try again."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout: float | None,
        request_id: str,
        on_retry: OnRetry | None = None,
    ) -> None:
        self.policy = policy
        self.request_id = request_id
        self.count = 0
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._on_retry = on_retry

    def start(self) -> float | None:
        """Count a new attempt; the time it may take (None: no deadline)."""
        self.count += 1
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise error_for(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"deadline exceeded after {self.count - 1} attempts",
                request_id=self.request_id,
            )
        return remaining

    def error(self, error: grpc.aio.AioRpcError) -> RillError:
        return from_rpc_error(error, request_id=self.request_id)

    async def retry(self, error: RillError, *, received: int) -> bool:
        """Whether to try again after ``error``; if so, waits out the backoff first."""
        if error.code != grpc.StatusCode.UNAVAILABLE or received or self.count >= self.policy.max_attempts:
            return False
        delay = self.policy.backoff(self.count)
        if self._deadline is not None:
            delay = min(delay, max(0.0, self._deadline - time.monotonic()))
        if self._on_retry is not None:
            self._on_retry(self.count + 1, error, delay)
        await asyncio.sleep(delay)
        return True


async def unary_call(
    start: typing.Callable[[float | None], grpc.aio.UnaryUnaryCall[typing.Any, typing.Any]],
    attempts: Attempts,
) -> typing.Any:
    """The response of a unary call, retried like a stream that has received nothing."""
    while True:
        call = start(attempts.start())
        try:
            return await call
        except grpc.aio.AioRpcError as rpc_error:
            error = attempts.error(rpc_error)
        if not await attempts.retry(error, received=0):
            raise error


class ResponseStream(typing.Generic[T_co]):
    """The responses of one server-streaming call, converted to models, each as soon as it arrives.

    ::

        async with client.process_orders(["a", "b"]) as results:
            async for result in results:
                print(result.order_id)

    The call starts on the first iteration. Leaving the ``async with`` block (also by ``break`` or
    an exception), ``aclose()``, or cancelling the task that iterates cancels the call on the wire:
    the server stops working on it. A stream dropped unfinished without any of these (``break`` in a
    bare ``async for``) is cancelled when it is garbage-collected: at once in CPython, but prefer
    ``async with``. A stream is iterated once.
    """

    def __init__(
        self,
        start: typing.Callable[[float | None], grpc.aio.UnaryStreamCall[typing.Any, typing.Any]],
        convert: typing.Callable[[typing.Any], T_co],
        attempts: Attempts,
    ) -> None:
        self._start = start
        self._convert = convert
        self._attempts = attempts
        self._call: grpc.aio.UnaryStreamCall[typing.Any, typing.Any] | None = None
        self._closed = False
        self.received = 0
        """How many items were delivered so far."""

    @property
    def request_id(self) -> str:
        """The ``x-request-id`` the call is sent with (the server logs it; errors carry it)."""
        return self._attempts.request_id

    @property
    def attempts(self) -> int:
        """How many attempts were started (more than 1 after retries on UNAVAILABLE)."""
        return self._attempts.count

    def __aiter__(self) -> typing.Self:
        return self

    async def __anext__(self) -> T_co:
        while not self._closed:
            if self._call is None:
                try:
                    self._call = self._start(self._attempts.start())
                except BaseException:  # the deadline passed during the backoff
                    self._closed = True
                    raise
            try:
                message = await self._call.read()
            except grpc.aio.AioRpcError as rpc_error:
                self._call = None
                error = self._attempts.error(rpc_error)
            except BaseException:
                # Cancelled while waiting (or anything unexpected): the call must not outlive us.
                self._abandon()
                raise
            else:
                if message is _EOF:
                    self._call = None
                    break
                self.received += 1
                return self._convert(message)
            try:
                retry = await self._attempts.retry(error, received=self.received)
            except BaseException:
                self._abandon()
                raise
            if not retry:
                self._closed = True
                raise error
        self._closed = True
        raise StopAsyncIteration

    def _abandon(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def aclose(self) -> None:
        """Stop: cancel the call on the wire if it is still running. Safe to call twice."""
        self._abandon()

    def __del__(self) -> None:
        # A stream dropped unfinished (`break` in a bare `async for`) must not leave its call running.
        # grpc.aio cancels a call when it is collected, but its calls sit in reference cycles that
        # only the cycle collector breaks, much later; this object is freed as soon as it is dropped.
        call = getattr(self, "_call", None)
        if call is not None and not call.done():
            call.cancel()

    async def __aenter__(self) -> typing.Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        await self.aclose()
