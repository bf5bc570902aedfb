"""What the gRPC server admits: how many calls may be in flight, and how long a request may take.

grpc.aio takes a call up as soon as its HEADERS arrive, then waits for its request message with no
time limit: a client that opens streams and never sends their message holds two tasks and ~21 KiB
per stream for ever (issue 15: 10,000 such streams, +215 MiB, never answered). grpc has no option
for that wait (``grpc.server_max_unrequested_time_in_server`` bounds the wait *before* the call is
taken up; keepalive and ``max_connection_idle`` see a connection with open streams as busy), so
:class:`AdmissionInterceptor` bounds it here, for every method (health and reflection included):

- ``limits.max_concurrent_rpcs``: a call beyond that many in flight is refused at once with
  RESOURCE_EXHAUSTED (:class:`server.errors.TooManyCalls`) and a rate-limited log line. It replaces
  grpc.aio's ``maximum_concurrent_rpcs``, which refuses the same way but logs nothing.
- ``limits.request_timeout``: a unary-request method is served as a request-streaming one whose
  first message is awaited with that timeout; if it does not arrive the call ends DEADLINE_EXCEEDED
  (:class:`server.errors.RequestTimeout`), which frees its HTTP/2 stream, with a rate-limited log
  line. Cancelling the waiting task would not: grpc.aio then sends no status and keeps the stream.

The third bound, ``limits.max_concurrent_streams``, is grpc's HTTP/2 setting (:mod:`server.limits`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import typing

import grpc

from server.calls import REQUEST_ID_KEY, request_id_from
from server.errors import (
    FieldViolation,
    InvalidArgument,
    RequestTimeout,
    ServiceError,
    TooManyCalls,
    status_for,
)
from server.logs import RateLimit, left_out_note

__all__ = ["AdmissionInterceptor"]

logger = logging.getLogger("server.admission")


Handler: typing.TypeAlias = "grpc.RpcMethodHandler[typing.Any, typing.Any]"
Context: typing.TypeAlias = "grpc.aio.ServicerContext[typing.Any, typing.Any]"


def _request_id(metadata: typing.Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return request_id_from(value)
    return request_id_from(None)


async def _end(context: Context, error: ServiceError) -> typing.NoReturn:
    request_id = _request_id(context.invocation_metadata())
    status = status_for(error, request_id)
    await context.abort(status.code, status.message, ((REQUEST_ID_KEY, request_id),))
    raise AssertionError("abort() returned")  # pragma: no cover - grpc raises AbortError


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls beyond ``max_in_flight``; ends calls whose request takes over ``request_timeout`` s.

    Either may be None (no bound). Put it first among the interceptors, so that what the others
    return (a refusing handler, say) is bounded too.
    """

    def __init__(self, *, max_in_flight: int | None, request_timeout: float | None) -> None:
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout
        self.in_flight = 0
        self._refused_log = RateLimit()
        self._timeout_log = RateLimit()
        # The wrapped handler of each method, made once: (grpc's handler, ours).
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: typing.Callable[[grpc.HandlerCallDetails], typing.Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # None: grpc answers UNIMPLEMENTED
        if self.max_in_flight is not None:
            if self.in_flight >= self.max_in_flight:
                return self._refusing(handler, handler_call_details.method)
            task = asyncio.current_task()
            if task is not None:  # grpc.aio runs each call in a task of its own: counted until it ends
                self.in_flight += 1
                task.add_done_callback(self._call_ended)
        if self.request_timeout is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._with_request_timeout(handler, method)
        if wrapped is not handler:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _call_ended(self, task: object) -> None:
        self.in_flight -= 1

    def _refusing(self, handler: Handler, method: str) -> Handler:
        left_out = self._refused_log.allow()
        if left_out is not None:
            logger.warning(
                "%s refused RESOURCE_EXHAUSTED: %d calls in flight (limits.max_concurrent_rpcs)%s",
                method,
                self.in_flight,
                left_out_note(left_out),
            )
        error = TooManyCalls(f"the server has {self.max_in_flight} calls in flight: retry later")

        async def refuse(request: typing.Any, context: Context) -> None:
            await _end(context, error)

        # Same kind as the refused method; its request (if any) is never read (a request-streaming
        # handler is not asked for it), so the refusal does not wait for it either.
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse, None, handler.response_serializer)
        return grpc.stream_unary_rpc_method_handler(refuse, None, handler.response_serializer)

    def _with_request_timeout(self, handler: Handler, method: str) -> Handler:
        """``handler`` served as request-streaming, its one request awaited with the timeout."""
        seconds = typing.cast(float, self.request_timeout)
        timeout_log = self._timeout_log

        async def first_request(context: Context) -> typing.Any:
            try:
                async with asyncio.timeout(seconds):
                    request = await context.read()
            except TimeoutError:
                left_out = timeout_log.allow()
                if left_out is not None:
                    logger.warning(
                        "%s sent no request message within %g s: ended DEADLINE_EXCEEDED "
                        "(limits.request_timeout)%s",
                        method,
                        seconds,
                        left_out_note(left_out),
                    )
                await _end(
                    context, RequestTimeout(f"the request message did not arrive within {seconds:g} s")
                )
            if request is grpc.aio.EOF:
                await _end(
                    context, InvalidArgument([FieldViolation("request", "no request message was sent")])
                )
            return request

        deserialize, serialize = handler.request_deserializer, handler.response_serializer
        # types-grpcio types the behaviours as taking the synchronous ServicerContext.
        unary = typing.cast(typing.Callable[..., typing.Any] | None, handler.unary_unary)
        if unary is not None and inspect.iscoroutinefunction(unary):

            async def unary_after_request(requests: object, context: Context) -> typing.Any:
                return await unary(await first_request(context), context)

            return grpc.stream_unary_rpc_method_handler(unary_after_request, deserialize, serialize)
        stream = typing.cast(typing.Callable[..., typing.Any] | None, handler.unary_stream)
        if stream is not None and inspect.isasyncgenfunction(stream):

            async def generator_after_request(requests: object, context: Context) -> None:
                responses = stream(await first_request(context), context)
                try:
                    async for response in responses:
                        await context.write(response)
                finally:
                    await responses.aclose()

            return grpc.stream_stream_rpc_method_handler(generator_after_request, deserialize, serialize)
        if stream is not None and inspect.iscoroutinefunction(stream):

            async def stream_after_request(requests: object, context: Context) -> None:
                await stream(await first_request(context), context)

            return grpc.stream_stream_rpc_method_handler(stream_after_request, deserialize, serialize)
        return handler  # a synchronous handler (none here): grpc reads its request itself
