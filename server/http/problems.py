"""Refusals the HTTP edge makes before (or instead of) routing, in the one documented shape.

Every error the edge answers is ``{"code": <gRPC status name>, "message": ..., "field_violations":
[...]}`` (:meth:`server.errors.Status.to_json`), never FastAPI's ``{"detail": ...}`` nor a plain
text page. Request bodies that cannot be parsed (bytes that are not UTF-8, JSON nested deeper than
the parser goes) are invalid arguments like any other (:class:`server.errors.InvalidArgument`, 422).
The router's own refusals keep their HTTP status (404, 405 with its ``Allow`` header, ...) and carry
the nearest gRPC code; so do the refusals of the connection layer (:mod:`server.http.protocol`),
written as raw bytes because no request was parsed.
"""

from __future__ import annotations

import json

import grpc
from starlette.responses import JSONResponse

from server.calls import REQUEST_ID_KEY
from server.errors import Status

__all__ = ["UNPARSABLE", "problem_response", "raw_response"]

UNPARSABLE = "could not be parsed (not UTF-8 JSON, or nested too deeply)"

# The nearest gRPC code of each HTTP status the framework or the connection layer answers itself.
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 503: "Service Unavailable"}


def problem(http_status: int, message: str) -> Status:
    return Status(_CODES.get(http_status, grpc.StatusCode.UNKNOWN), message)


def problem_response(http_status: int, message: str, request_id: str, **headers: str) -> JSONResponse:
    body = problem(http_status, message).to_json()
    return JSONResponse(body, http_status, headers={REQUEST_ID_KEY: request_id, **headers})


def raw_response(http_status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for the connection layer."""
    body = json.dumps(problem(http_status, message).to_json()).encode()
    head = (
        f"HTTP/1.1 {http_status} {_REASONS.get(http_status, '')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
