"""The errors a :class:`~client.RillClient` raises: one per meaningful gRPC status.

Every call that ends with a non-OK status raises a :class:`RillError` subclass chosen by the status
code. The error keeps what the server said: the ``code`` (a ``grpc.StatusCode``), the ``message``,
the field ``violations`` of an INVALID_ARGUMENT (parsed from the ``google.rpc.BadRequest`` detail in
``grpc-status-details-bin``) and the ``request_id`` the server logged the call under::

    RillError                  any non-OK status; codes without a class of their own land here
    ├── InvalidArgument        INVALID_ARGUMENT: the request is wrong; ``violations`` say where
    ├── NotFound               NOT_FOUND: e.g. an order that was never processed
    ├── DeadlineExceeded       DEADLINE_EXCEEDED: the call's deadline (``timeout``) passed
    ├── Unavailable            UNAVAILABLE: no server, a restart, a broker outage (retried for you
    │                          while nothing was received yet)
    ├── Cancelled              CANCELLED: the call was cancelled by the server or the network
    ├── Unauthenticated        UNAUTHENTICATED: missing or bad credentials
    ├── PermissionDenied       PERMISSION_DENIED: the credentials do not allow the call
    ├── ResourceExhausted      RESOURCE_EXHAUSTED: e.g. a message larger than the limit
    ├── Unimplemented          UNIMPLEMENTED: the server does not serve this method
    └── Internal               INTERNAL, UNKNOWN, DATA_LOSS: the server failed; quote the request id

Cancelling a call yourself (breaking out of a stream, cancelling the task) raises no ``RillError``:
a cancelled task sees ``asyncio.CancelledError`` as usual.
"""

from __future__ import annotations

import typing

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rill_wire import REQUEST_ID_KEY

__all__ = [
    "Cancelled",
    "DeadlineExceeded",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RillError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
]


class FieldViolation(typing.NamedTuple):
    """One bad field of a request, from ``google.rpc.BadRequest``: its path and what is wrong."""

    field: str
    description: str


class RillError(Exception):
    """A call ended with a non-OK status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        violations: typing.Sequence[FieldViolation] = (),
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, "
            f"violations={list(self.violations)!r}, request_id={self.request_id!r})"
        )


class InvalidArgument(RillError):
    """INVALID_ARGUMENT: the request is wrong; ``violations`` name each bad field."""


class NotFound(RillError):
    """NOT_FOUND: the thing asked for does not exist."""


class DeadlineExceeded(RillError):
    """DEADLINE_EXCEEDED: the call did not finish within its deadline."""


class Unavailable(RillError):
    """UNAVAILABLE: the service cannot be reached or cannot serve right now."""


class Cancelled(RillError):
    """CANCELLED: the call was cancelled by the other side (not by this process)."""


class Unauthenticated(RillError):
    """UNAUTHENTICATED: the call carried no valid credentials."""


class PermissionDenied(RillError):
    """PERMISSION_DENIED: the credentials do not allow this call."""


class ResourceExhausted(RillError):
    """RESOURCE_EXHAUSTED: a limit was hit (message size, quota)."""


class Unimplemented(RillError):
    """UNIMPLEMENTED: the server does not serve this method."""


class Internal(RillError):
    """INTERNAL, UNKNOWN or DATA_LOSS: the server failed; its logs know more under ``request_id``."""


_BY_CODE: dict[grpc.StatusCode, type[RillError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def error_for(
    code: grpc.StatusCode,
    message: str,
    *,
    violations: typing.Sequence[FieldViolation] = (),
    request_id: str | None = None,
) -> RillError:
    """The error of the class that stands for ``code``."""
    return _BY_CODE.get(code, RillError)(code, message, violations=violations, request_id=request_id)


def _violations(error: grpc.RpcError) -> tuple[FieldViolation, ...]:
    try:
        status = rpc_status.from_call(typing.cast(grpc.Call, error))
    except ValueError:  # a details trailer that contradicts the status: trust the status
        return ()
    if status is None:
        return ()
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    return tuple(violations)


def from_rpc_error(error: grpc.RpcError, *, request_id: str | None = None) -> RillError:
    """The :class:`RillError` for a failed call (``grpc.aio.AioRpcError``).

    ``request_id`` is used when the server's trailers do not echo one (e.g. no server was reached).
    """
    # types-grpcio types an RpcError's trailing metadata as opaque items; they are (key, value) pairs.
    trailers = typing.cast(typing.Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
    for key, value in trailers:
        if key == REQUEST_ID_KEY and isinstance(value, str):
            request_id = value
    return error_for(
        error.code(), error.details() or "", violations=_violations(error), request_id=request_id
    )
