"""Calls in flight: request ids, the end-of-call log line, error statuses, and the drain.

Every RPC runs inside ``CallRegistry.open``: it gets a request id (the caller's ``x-request-id``
metadata, or a new one, echoed in the trailing metadata), is counted while it runs so that shutdown
can wait for it, and turns any exception into a status through :func:`server.errors.status_for`.

This is also where each call is measured (:mod:`server.metrics`), traced (:mod:`server.tracing`)
and logged, once, when its outcome is known and before the status leaves (a gRPC ``abort()`` sends
it at once): the log line carries method, code, items, duration, request id and trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
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

__all__ = ["CURRENT_CALL", "REQUEST_ID_KEY", "Call", "CallRegistry", "GrpcCallScope", "request_id_from"]

CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("rill_call", default=None)
"""The call being served (in its handler and in the event-handler runs it started): for the logs."""

logger = logging.getLogger("server.calls")

_CurrentTokens: typing.TypeAlias = (
    "tuple[contextvars.Token[Call | None], contextvars.Token[otel_context.Context] | None]"
)

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

    @contextlib.contextmanager
    def current(self) -> typing.Iterator[None]:
        """Make this call (and its span) current: what runs inside, event-handler runs included,
        logs with its request id and trace id, and traces as its children."""
        tokens = self.enter()
        try:
            yield
        finally:
            self.leave(tokens)

    def enter(self) -> _CurrentTokens:
        """:meth:`current` without a context manager, for the per-call hot path; undo with :meth:`leave`."""
        call_token = CURRENT_CALL.set(self)
        if self.span is None:
            return call_token, None
        return call_token, otel_context.attach(trace.set_span_in_context(self.span))

    @staticmethod
    def leave(tokens: _CurrentTokens) -> None:
        call_token, span_token = tokens
        if span_token is not None:
            otel_context.detach(span_token)
        CURRENT_CALL.reset(call_token)

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

    def begin(
        self,
        method: str,
        request_id: str,
        *,
        transport: str = "grpc",
        carrier: typing.Mapping[str, str] | None = None,
    ) -> Call:
        """Count a call from now until :meth:`finish` (the transport reports its outcome on the
        :class:`Call`). ``carrier`` holds the caller's headers or metadata (its ``traceparent``)."""
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

    def finish(self, call: Call) -> None:
        if call.code is None and call.span is not None:
            call.span.end()  # the transport never reported an outcome (a bug): do not leak the span
        if call.series is not None:
            call.series.in_flight -= 1
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()

    @contextlib.contextmanager
    def track(
        self,
        method: str,
        request_id: str,
        *,
        transport: str = "grpc",
        carrier: typing.Mapping[str, str] | None = None,
    ) -> typing.Iterator[Call]:
        """:meth:`begin` and :meth:`finish` around a block."""
        call = self.begin(method, request_id, transport=transport, carrier=carrier)
        try:
            yield call
        finally:
            self.finish(call)

    def open(self, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> GrpcCallScope:
        """A gRPC call: tracked, its request id echoed, any exception turned into its status.

        ``with calls.open(path, context) as call: ...``
        """
        return GrpcCallScope(self, method, context)

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


class GrpcCallScope:
    """What :meth:`CallRegistry.open` returns: one gRPC call from its first line to its status.

    A plain (synchronous) context manager, run once per call and kept lean: on the path to a
    stream's first message its cost is paid by every call. A failure becomes the call's status
    through ``set_code``/``set_details``/``set_trailing_metadata`` and the exception is swallowed,
    so grpc sends that status when the handler returns (no ``await context.abort()`` needed).
    """

    __slots__ = ("_calls", "_context", "_method", "_token", "call")

    def __init__(
        self, calls: CallRegistry, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> None:
        self._calls = calls
        self._method = method
        self._context = context

    def __enter__(self) -> Call:
        # Counted from here, so that a scope made but never entered leaves no call counted.
        metadata = self._context.invocation_metadata() or ()
        request_id: str | None = None
        for key, value in metadata:
            if key == REQUEST_ID_KEY and isinstance(value, str):
                request_id = value
                break
        carrier = _grpc_metadata(metadata) if self._calls.tracing is not None else None
        call = self.call = self._calls.begin(self._method, request_id_from(request_id), carrier=carrier)
        self._context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
        self._token = call.enter()
        return call

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> bool:
        call = self.call
        try:
            Call.leave(self._token)
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
            self._calls.finish(call)
