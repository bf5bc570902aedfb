"""The errors a service raises for its callers to see: plain exceptions, no transport in them.

A service's handlers (``server/services/``, or any team's) raise these; :mod:`server.errors` is the one
place that turns them, and any other exception, into a gRPC status::

    ServiceError
    ├── InvalidArgument   the request is wrong; carries field violations (google.rpc.BadRequest)
    ├── NotFound          the thing asked for does not exist
    ├── Unauthenticated   no credentials (no bearer token)          (server.auth)
    ├── PermissionDenied  credentials, but not valid ones            (server.auth)
    ├── SlowConsumer      the client took no item for too long       (server.binding)
    ├── TooManyCalls      limits.max_concurrent_rpcs calls are in flight   (server.admission)
    └── RequestTimeout    the request message did not arrive in time       (server.admission)

Exceptions of your own map to codes with ``ServiceBinding(..., error_codes={QuotaExceeded:
grpc.StatusCode.RESOURCE_EXHAUSTED})``.
"""

from __future__ import annotations

import dataclasses
import typing

__all__ = [
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RequestTimeout",
    "ServiceError",
    "SlowConsumer",
    "TooManyCalls",
    "Unauthenticated",
]


class ServiceError(Exception):
    """Root of the errors the service raises for its callers to see."""


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (``order_ids[2]``) and what is wrong with it."""

    field: str
    description: str


class InvalidArgument(ServiceError):
    """The request is invalid; ``violations`` say where and why."""

    def __init__(self, violations: typing.Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class NotFound(ServiceError):
    """The requested entity does not exist."""


class Unauthenticated(ServiceError):
    """The call carries no credentials where they are required."""


class PermissionDenied(ServiceError):
    """The call's credentials are not accepted."""


class SlowConsumer(ServiceError):
    """The client accepted no item for longer than the stream's stall timeout."""


class TooManyCalls(ServiceError):
    """As many calls as ``limits.max_concurrent_rpcs`` are in flight: this one is refused."""


class RequestTimeout(ServiceError):
    """The call's request message did not arrive within ``limits.request_timeout``."""
