"""The service's log lines: one JSON object per line, or readable text on a terminal.

Every record logged while a call is being served (in its handler, and in the event-handler runs it
started) carries the call's ``request_id`` and ``trace_id``; the line that ends a call adds
``method``, ``code``, ``items`` and ``duration`` (seconds); the line of a failed event-handler run
adds ``handler``, ``event`` and ``outcome``. For example::

    {"time": "2026-11-27T13:40:02.114Z", "level": "INFO", "logger": "server.calls",
     "message": "/orders.v1.OrderService/ProcessOrders OK, 3 items, 0.004 s (request id 5b1f...)",
     "method": "/orders.v1.OrderService/ProcessOrders", "code": "OK", "items": 3,
     "duration": 0.004211, "request_id": "5b1f...", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

The standard library's ``logging`` with a small formatter, rather than structlog or
python-json-logger: every module already logs through ``logging`` with ``extra=`` fields, the
formatter is a few lines, and the service gains no dependency for it.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import typing

from opentelemetry import trace

from server.calls import CURRENT_CALL

__all__ = ["CallContextFilter", "JsonFormatter", "configure_logging"]

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
