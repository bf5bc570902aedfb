"""uvicorn's HTTP/1.1 protocol with the limits uvicorn lacks: a connection cap and request deadlines.

uvicorn (0.55, h11) arms no timer on a new connection and re-arms its keep-alive timer on every
byte received, so a client that connects and sends nothing, or trickles a request's headers one
byte at a time, holds a connection (a file descriptor) for ever; and it accepts every connection,
so enough silent ones exhaust the process's descriptors and stop the gRPC port accepting too. Here:

- a connection beyond ``max_connections`` is answered 503 and closed at once;
- a request's headers must arrive within ``header_timeout`` of the connection opening (or of the
  previous response ending), its body within ``body_timeout`` of its headers; otherwise 408 (if no
  response is under way) and the connection is closed;
- an unparsable request gets the documented error body, not uvicorn's plain-text 400;
- a response that cannot be finished (an SSE stream whose client stopped reading) can close its
  connection through the scope extension :data:`CLOSE_CONNECTION`.

Idle keep-alive connections are uvicorn's own ``timeout_keep_alive``. Each limit logs a warning when
it acts, at most one line per limit every ``_REPORT_EVERY`` seconds (with a count), so that an
attack does not flood the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import typing

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from server.http.limits import HttpLimitSettings
from server.http.problems import raw_response

__all__ = ["CLOSE_CONNECTION", "guarded_protocol"]

CLOSE_CONNECTION = "rill.close_connection"
"""The ASGI scope extension (a callable) that ends a response's connection at once."""

logger = logging.getLogger("server.http")

_REPORT_EVERY = 10.0


class _Report:
    """A warning that is logged at once, then at most once per ``_REPORT_EVERY`` s with a count."""

    def __init__(self, message: str) -> None:
        self._message = message
        self._last = -_REPORT_EVERY
        self._unreported = 0

    def __call__(self, *args: object) -> None:
        self._unreported += 1
        now = time.monotonic()
        if now - self._last < _REPORT_EVERY:
            return
        logger.warning(self._message + " (%d since the last report)", *args, self._unreported)
        self._last = now
        self._unreported = 0


class _GuardedH11Protocol(H11Protocol):
    limits: typing.ClassVar[HttpLimitSettings]
    over_cap: typing.ClassVar[_Report]
    too_slow: typing.ClassVar[_Report]

    _deadline: asyncio.TimerHandle | None = None
    _waiting_for: str = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.over_cap(self.limits.max_connections)
            self.transport.write(raw_response(503, "too many connections; try again later"))
            self.transport.close()
            return
        self._expect("headers", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The cycle's scope is this very dict, and its task has not run yet: the application
            # can end the connection of a response it cannot finish (server.http.sse, a stall).
            extensions: dict[str, typing.Any] = typing.cast(typing.Any, self.scope).setdefault(
                "extensions", {}
            )
            extensions[CLOSE_CONNECTION] = functools.partial(_close_connection, cycle, self.transport)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answers in plain text; the edge answers every error in one shape.
        self._disarm()
        self.transport.write(raw_response(400, f"not a valid HTTP/1.1 request: {msg}"))
        self.transport.close()

    def _follow(self) -> None:
        """Arm the deadline for what the connection waits for now (a request, or its body)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._waiting_for != "headers":
                self._expect("headers", self.limits.header_timeout)
        elif state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._expect("body", self.limits.body_timeout)
        else:  # the request is in: the response may take as long as it takes
            self._disarm()

    def _expect(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        self._waiting_for = ""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.too_slow(what, seconds)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(
                raw_response(408, f"the request's {what} did not arrive within {seconds:g} s")
            )
        self.transport.close()


def _close_connection(cycle: RequestResponseCycle, transport: asyncio.Transport) -> None:
    cycle.disconnected = True  # nothing more is sent, and uvicorn logs no unfinished response
    transport.abort()  # not close(): that would wait, holding the buffers, for a reader that reads nothing


def guarded_protocol(limits: HttpLimitSettings, name: str) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with ``limits``, for the listener called ``name`` (in the log lines)."""
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {
            "limits": limits,
            "over_cap": _Report(f"{name}: refused connections over http_limits.max_connections=%d"),
            "too_slow": _Report(f"{name}: closed connections whose request %s took over %g s"),
        },
    )
