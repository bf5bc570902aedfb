"""Calls in flight: request ids, the end-of-call log line, error statuses, and the drain.

Every call, whatever its transport, runs inside a :class:`CallScope`, the one way to open a call
and the one way to make it current: it gets a request id (the caller's ``x-request-id``, or a new
one, echoed back), is counted while it runs so that shutdown can wait for it, is current while it
runs (its request id and span in the logs, the traces and its event-handler runs), and has its
outcome recorded once. A transport's subclass says only where the request id comes from and how an
outcome leaves: :class:`GrpcCallScope` sets the status on the gRPC context (any exception becomes
one through :func:`server.errors.status_for`), ``server.connect.calls.ConnectCallScope`` raises a
``ConnectError``, and the HTTP edge reports outcomes itself (:class:`HttpCallScope`).

This is also where each call is measured (:mod:`server.metrics`), traced (:mod:`server.tracing`)
and logged, once, when its outcome is known and before the status leaves (a gRPC ``abort()`` sends
it at once): the log line carries method, code, items, duration, request id and trace id.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import types
import typing

import grpc
from grpc_status import rpc_status
from opentelemetry import context as otel_context
from opentelemetry import trace

from rill_wire import REQUEST_ID_KEY
from server.errors import ErrorCodes, Status, status_for
from server.metrics import CallSeries, Metrics, RpcLabels
from server.tracing import Tracing, trace_id_of

__all__ = [
    "CURRENT_CALL",
    "REQUEST_ID_KEY",
    "Call",
    "CallRegistry",
    "CallScope",
    "GrpcCallScope",
    "HttpCallScope",
    "request_id_from",
]

CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("rill_call", default=None)
"""The call being served (in its handler and in the event-handler runs it started): for the logs."""

logger = logging.getLogger("server.calls")

_random_bits = random.getrandbits


class Call:
    """One call in flight, over gRPC or HTTP."""

    __slots__ = (
        "client_wait",
        "code",
        "error_codes",
        "items",
        "method",
        "request_id",
        "series",
        "span",
        "started",
    )

    def __init__(
        self,
        method: str,
        request_id: str,
        series: CallSeries | None = None,
        span: trace.Span | None = None,
        error_codes: ErrorCodes | None = None,
    ) -> None:
        self.method = method
        self.error_codes = error_codes
        self.request_id = request_id
        self.items = 0
        self.started = time.monotonic()
        self.series = series
        self.span = span
        self.client_wait = 0.0  # seconds spent waiting for the client to take messages
        self.code: grpc.StatusCode | None = None  # once the outcome is known

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def trace_id(self) -> str:
        return trace_id_of(self.span)

    def sent(self, since: float | None = None) -> None:
        """One response message was sent (``since``: the monotonic time its sending started)."""
        self.items += 1
        series = self.series
        if series is not None:
            now = time.monotonic()
            series.sent += 1
            if since is not None:
                self.client_wait += now - since
            if self.items == 1:
                series.first_message.observe(now - self.started)

    def _log_fields(self, code: grpc.StatusCode) -> dict[str, typing.Any]:
        return {
            "method": self.method,
            "code": code.name,
            "items": self.items,
            "duration": round(self.elapsed, 6),
            "request_id": self.request_id,
            "trace_id": self.trace_id,
        }

    def _end(self, code: grpc.StatusCode, error: BaseException | None = None) -> bool:
        """Record the outcome once (metrics, span); False if it was recorded already."""
        if self.code is not None:
            return False
        self.code = code
        series = self.series
        if series is not None:
            series.handled[code.name] += 1
            series.handling.observe(self.elapsed)
            if series.labels.grpc_type == "server_stream":
                series.wait.observe(self.client_wait)
        if self.span is not None:
            Tracing.end(self.span, code, self.items, error)
        return True

    def cancelled(self) -> None:
        # The client went away, its deadline passed, or the server stopped: nobody hears a status.
        if not self._end(grpc.StatusCode.CANCELLED) or not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "%s cancelled after %d items, %.3f s (request id %s)",
            self.method,
            self.items,
            self.elapsed,
            self.request_id,
            extra=self._log_fields(grpc.StatusCode.CANCELLED),
        )

    def failed(self, error: Exception) -> Status:
        """The status the caller gets for ``error``, logged (with the traceback if unexpected)."""
        status = status_for(error, self.request_id, self.error_codes)
        if not self._end(status.code, None if status.expected else error):
            return status
        if status.expected:
            if not logger.isEnabledFor(logging.INFO):
                return status
            logger.info(
                "%s %s after %d items: %s (request id %s)",
                self.method,
                status.code.name,
                self.items,
                status.message,
                self.request_id,
                extra=self._log_fields(status.code),
            )
        else:
            logger.error(
                "%s failed after %d items (request id %s)",
                self.method,
                self.items,
                self.request_id,
                exc_info=error,
                extra=self._log_fields(status.code),
            )
        return status

    def succeeded(self) -> None:
        # The level is checked first: building the log fields costs more than the rest of this.
        if not self._end(grpc.StatusCode.OK) or not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "%s OK, %d items, %.3f s (request id %s)",
            self.method,
            self.items,
            self.elapsed,
            self.request_id,
            extra=self._log_fields(grpc.StatusCode.OK),
        )


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sensible one, else a new one."""
    if value and len(value) <= 128 and value.isprintable():
        return value
    # A correlation id, not a secret: 128 bits from the process's PRNG, as long as a uuid4's hex,
    # without the getrandom() system call per call that uuid4 and secrets make.
    return _random_bits(128).to_bytes(16).hex()


def _grpc_metadata(metadata: typing.Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    return {key: value for key, value in metadata if isinstance(value, str)}


class CallRegistry:
    """Counts the calls in flight over both transports; ``wait_idle`` lets shutdown wait for them.

    With ``metrics`` and ``tracing``, every call is also measured and traced; ``kinds`` gives each
    RPC's ``grpc_type`` (``unary`` or ``server_stream``) by method path.
    """

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        kinds: typing.Mapping[str, str] | None = None,
    ) -> None:
        self.active = 0
        self._idle: asyncio.Event | None = None
        self.metrics = metrics
        self.tracing = tracing
        self.kinds = dict(kinds or {})
        self.error_codes: dict[str, ErrorCodes] = {}
        """A binding's own exception -> code mapping, by method path (``ServiceBinding.error_codes``)."""

    def _series(self, method: str, transport: str) -> CallSeries | None:
        if self.metrics is None:
            return None
        service, _, name = method.lstrip("/").partition("/")
        kind = self.kinds.get(method, "unknown")
        return self.metrics.series(RpcLabels(kind, service, name, transport))

    def _begin(
        self, method: str, request_id: str, transport: str, carrier: typing.Mapping[str, str] | None
    ) -> Call:
        """Count a call from now until :meth:`_finish` (for :class:`CallScope`). ``carrier`` holds
        the caller's headers or metadata (its ``traceparent``)."""
        series = self._series(method, transport) if self.metrics is not None else None
        span = (
            self.tracing.server_span(method, carrier or {}, transport, request_id)
            if self.tracing is not None
            else None
        )
        call = Call(method, request_id, series, span, self.error_codes.get(method))
        self.active += 1
        if series is not None:
            series.started += 1
            series.in_flight += 1
        return call

    def _finish(self, call: Call) -> None:
        if call.code is None and call.span is not None:
            call.span.end()  # the transport never reported an outcome (a bug): do not leak the span
        if call.series is not None:
            call.series.in_flight -= 1
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


class CallScope:
    """One call from its first line to its outcome, whatever its transport; the base of
    :class:`HttpCallScope`, :class:`GrpcCallScope` and ``server.connect.calls.ConnectCallScope``.

    Entering it counts the call (for the drain; measured and traced when the registry is) and makes
    it current: what runs inside, event-handler runs included, logs with its request id and trace
    id, and traces as its children. A transport's subclass says where the request id comes from
    and goes back (its ``__init__``), and how the outcome leaves (its ``__exit__``, which calls
    :meth:`_leave` first and ``self._calls._finish(call)`` last, in a ``finally``): whether it
    swallows the error is part of its type, which is why each writes its own ``__exit__``.

    A plain (synchronous) context manager, run once per call and kept lean: on the path to a
    stream's first message its cost is paid by every call.
    """

    __slots__ = (
        "_call_token",
        "_calls",
        "_carrier",
        "_method",
        "_request_id",
        "_span_token",
        "_transport",
        "call",
    )

    def __init__(
        self,
        calls: CallRegistry,
        method: str,
        request_id: str,
        *,
        transport: str = "grpc",
        carrier: typing.Mapping[str, str] | None = None,
    ) -> None:
        self._calls = calls
        self._method = method
        self._request_id = request_id
        self._transport = transport
        self._carrier = carrier

    def __enter__(self) -> Call:
        # Counted from here, so that a scope made but never entered leaves no call counted.
        call = self.call = self._calls._begin(self._method, self._request_id, self._transport, self._carrier)
        self._call_token = CURRENT_CALL.set(call)
        span = call.span
        self._span_token = None if span is None else otel_context.attach(trace.set_span_in_context(span))
        return call

    def _leave(self) -> None:
        """The call is no longer current (its outcome is reported after this, outside it)."""
        if self._span_token is not None:
            otel_context.detach(self._span_token)
        CURRENT_CALL.reset(self._call_token)


class HttpCallScope(CallScope):
    """An HTTP call: ``with HttpCallScope(calls, path, request_id, carrier=headers) as call``.

    The edge reports the outcome itself (:meth:`Call.succeeded`, :meth:`Call.failed` or
    :meth:`Call.cancelled`, and the response it sends), so the scope reports nothing and swallows
    nothing.
    """

    __slots__ = ()

    def __init__(
        self,
        calls: CallRegistry,
        method: str,
        request_id: str,
        *,
        carrier: typing.Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(calls, method, request_id, transport="http", carrier=carrier)

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        try:
            self._leave()
        finally:
            self._calls._finish(self.call)


class GrpcCallScope(CallScope):
    """A gRPC call: ``with GrpcCallScope(calls, path, context) as call``.

    The request id comes from the invocation metadata and goes back in the trailing metadata. A
    failure becomes the call's status through ``set_code``/``set_details``/``set_trailing_metadata``
    and the exception is swallowed, so grpc sends that status when the handler returns (no
    ``await context.abort()`` needed, and the scope stays synchronous).
    """

    __slots__ = ("_context",)

    def __init__(
        self, calls: CallRegistry, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> None:
        metadata = context.invocation_metadata() or ()
        request_id: str | None = None
        for key, value in metadata:
            if key == REQUEST_ID_KEY and isinstance(value, str):
                request_id = value
                break
        carrier = _grpc_metadata(metadata) if calls.tracing is not None else None
        request_id = request_id_from(request_id)
        super().__init__(calls, method, request_id, carrier=carrier)
        self._context = context
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool:
        call = self.call
        try:
            self._leave()
            if error is None:
                call.succeeded()
            elif isinstance(error, asyncio.CancelledError):
                call.cancelled()
            elif isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                rich = rpc_status.to_status(call.failed(error).to_rpc_status())
                context = self._context
                context.set_trailing_metadata((*rich.trailing_metadata, (REQUEST_ID_KEY, call.request_id)))
                context.set_code(rich.code)
                context.set_details(rich.details)
                return True
            return False
        finally:
            self._calls._finish(call)
