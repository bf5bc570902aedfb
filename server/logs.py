"""The service's log lines: one JSON object per line, or readable text on a terminal.

Every record logged while a call is being served (in its handler, and in the event-handler runs it
started) carries the call's ``request_id`` and ``trace_id``; the line that ends a call adds
``method``, ``code``, ``items`` and ``duration`` (seconds); the line of a failed event-handler run
adds ``handler``, ``event`` and ``outcome``. For example::

    {"time": "2026-11-27T13:40:02.114Z", "level": "INFO", "logger": "server.calls",
     "message": "/orders.v1.OrderService/ProcessOrders OK, 3 items, 0.004 s (request id 5b1f...)",
     "method": "/orders.v1.OrderService/ProcessOrders", "code": "OK", "items": 3,
     "duration": 0.004211, "request_id": "5b1f...", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

Lines that a client can cause at will (a refused call, a bad metadata value) go through a
:class:`RateLimit`: the first one is written, then at most one per ``every`` seconds, counting the
ones left out. grpc's own "Invalid encoding" ERROR with its traceback, written twice per call whose
metadata value is not UTF-8, becomes one such WARNING line (:func:`quiet_grpc_decode_errors`).

The standard library's ``logging`` with a small formatter, rather than structlog or
python-json-logger: every module already logs through ``logging`` with ``extra=`` fields, the
formatter is a few lines, and the service gains no dependency for it.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
import typing

from opentelemetry import trace

from server.calls import CURRENT_CALL

__all__ = [
    "CallContextFilter",
    "GrpcDecodeErrorFilter",
    "JsonFormatter",
    "RateLimit",
    "configure_logging",
    "left_out_note",
    "quiet_grpc_decode_errors",
]

# Fields a record may carry through ``extra=``, in the order they are written.
FIELDS = ("method", "code", "items", "duration", "handler", "event", "outcome", "request_id", "trace_id")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CallContextFilter(logging.Filter):
    """Adds the current call's ``request_id`` and ``trace_id`` to records that lack them."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = CURRENT_CALL.get()
        if call is not None:
            if not hasattr(record, "request_id"):
                record.request_id = call.request_id
            if not hasattr(record, "trace_id"):
                record.trace_id = call.trace_id
        elif not hasattr(record, "trace_id"):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the fields, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, typing.Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value not in (None, ""):
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(
    level: str = "INFO", log_format: str = "auto", stream: typing.TextIO | None = None
) -> logging.Handler:
    """Log to ``stream`` (stderr) at ``level``: JSON lines, or text if ``auto`` and it is a terminal.

    Replaces the root logger's handlers; returns the new one.
    """
    stream = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    root = logging.getLogger()
    # Keep the text format basicConfig was given (``__main__``'s: it may name the worker).
    text = next((h.formatter for h in root.handlers if type(h.formatter) is logging.Formatter), None)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else text
        if text is not None
        else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(CallContextFilter())
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class RateLimit:
    """At most one log line per ``every`` seconds: :meth:`allow` says whether to write this one.

    ``allow()`` returns None while lines are being left out, else how many were left out since the
    last line written (0 for the first), for the line to say so.
    """

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._next = 0.0
        self._left_out = 0

    def allow(self) -> int | None:
        now = time.monotonic()
        if now < self._next:
            self._left_out += 1
            return None
        self._next = now + self.every
        left_out, self._left_out = self._left_out, 0
        return left_out


def left_out_note(left_out: int) -> str:
    """`` (N more like it not logged)`` for a rate-limited line, or nothing."""
    return f" ({left_out} more like it not logged)" if left_out else ""


GRPC_CYGRPC_LOGGER = "grpc._cython.cygrpc"


class GrpcDecodeErrorFilter(logging.Filter):
    """Turns grpc's "Invalid encoding on b'…'" ERROR and traceback into one rate-limited WARNING.

    grpc logs it each time it decodes a metadata value that is not UTF-8 (it then reads it as
    Latin-1 and the call goes on): twice per call, with a traceback, for anyone who sends such a value.
    """

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.limit = RateLimit(every)

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith("Invalid encoding on")):
            return True
        left_out = self.limit.allow()
        if left_out is None:
            return False
        record.msg = "a call's metadata value is not valid UTF-8: read as Latin-1%s"
        record.args = (left_out_note(left_out),)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def quiet_grpc_decode_errors() -> GrpcDecodeErrorFilter:
    """Install :class:`GrpcDecodeErrorFilter` on grpc's logger (once per process); return it."""
    grpc_logger = logging.getLogger(GRPC_CYGRPC_LOGGER)
    for existing in grpc_logger.filters:
        if isinstance(existing, GrpcDecodeErrorFilter):
            return existing
    installed = GrpcDecodeErrorFilter()
    grpc_logger.addFilter(installed)
    return installed
