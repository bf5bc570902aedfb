"""The service's errors and the one place where any exception becomes a gRPC status.

Service errors::

    ServiceError
    ├── InvalidArgument   the request is wrong; carries field violations (google.rpc.BadRequest)
    ├── NotFound          the thing asked for does not exist
    ├── Unauthenticated   no credentials (no bearer token)          (server.auth)
    ├── PermissionDenied  credentials, but not valid ones            (server.auth)
    ├── SlowConsumer      the client took no item for too long       (server.binding)
    ├── TooManyCalls      limits.max_concurrent_rpcs calls are in flight   (server.admission)
    └── RequestTimeout    the request message did not arrive in time       (server.admission)

Mapping (:func:`status_for`), the same for the gRPC and the HTTP edge (:attr:`Status.http_status`):

=====================================================  =====================
exception                                              status
=====================================================  =====================
``pydantic.ValidationError``, :class:`InvalidArgument`  INVALID_ARGUMENT + BadRequest
:class:`NotFound`                                      NOT_FOUND
:class:`Unauthenticated` / :class:`PermissionDenied`   UNAUTHENTICATED / PERMISSION_DENIED
:class:`SlowConsumer`, :class:`TooManyCalls`            RESOURCE_EXHAUSTED
:class:`RequestTimeout`                                DEADLINE_EXCEEDED
``mediator.exceptions.HandlerNotFound``                UNIMPLEMENTED
``mediator.exceptions.BrokerUnavailable`` (or as the   UNAVAILABLE
cause of an ``EventHandlerError``): the client is told
"notification broker unavailable", the log gets the rest
``mediator.exceptions.UnitOfWorkError`` caused by a    UNAVAILABLE ("state store
``ConnectionError`` (the store could not be reached)   unavailable")
``mediator.exceptions.EventHandlingError``             INTERNAL ("event processing failed")
anything else                                          INTERNAL (no internals leaked)
=====================================================  =====================

A status always fits grpc's 16 KiB limit on trailing metadata (a longer one reaches the client as
RESOURCE_EXHAUSTED instead): the ``BadRequest`` detail carries the first :data:`MAX_VIOLATIONS`
violations, each description cut to :data:`MAX_DESCRIPTION`, and says how many it left out.
"""

from __future__ import annotations

import dataclasses
import typing

import grpc
import pydantic
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from mediator.exceptions import BrokerUnavailable, EventHandlingError, HandlerNotFound, UnitOfWorkError
from server.exceptions import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestTimeout,
    ServiceError,
    SlowConsumer,
    TooManyCalls,
    Unauthenticated,
)

__all__ = [
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "MAX_VIOLATIONS",
    "ErrorCodes",
    "ServiceError",
    "RequestTimeout",
    "SlowConsumer",
    "Status",
    "TooManyCalls",
    "Unauthenticated",
    "status_for",
]


MAX_VIOLATIONS = 20
"""Field violations a status carries at most (the first ones; a last entry counts the others)."""
MAX_DESCRIPTION = 200
"""Characters of one violation's description at most (pydantic's messages can quote the input)."""


@dataclasses.dataclass(frozen=True)
class Status:
    """What a caller is told: a code, a message, and the field violations, if any."""

    code: grpc.StatusCode
    message: str
    violations: tuple[FieldViolation, ...] = ()
    expected: bool = True
    """False for failures the service did not anticipate: they are logged with their traceback."""

    @property
    def http_status(self) -> int:
        """The HTTP status of the same outcome (INVALID_ARGUMENT is 422, as for any invalid body)."""
        return _HTTP_STATUS.get(self.code, 500)

    def reported_violations(self) -> tuple[FieldViolation, ...]:
        """The violations a caller is sent: at most :data:`MAX_VIOLATIONS` + 1, descriptions cut.

        Beyond the limit, the last entry (field ``request``) says how many were left out.
        """
        shown = tuple(
            FieldViolation(v.field[:MAX_DESCRIPTION], _cut(v.description))
            for v in self.violations[:MAX_VIOLATIONS]
        )
        hidden = len(self.violations) - len(shown)
        if hidden > 0:
            shown += (FieldViolation("request", f"and {hidden} more violations, not listed"),)
        return shown

    def to_json(self) -> dict[str, typing.Any]:
        """The ``google.rpc.Status`` shape as JSON, with the code's name: what the HTTP edge answers."""
        body: dict[str, typing.Any] = {"code": self.code.name, "message": self.message}
        if self.violations:
            body["field_violations"] = [
                {"field": v.field, "description": v.description} for v in self.reported_violations()
            ]
        return body

    def to_rpc_status(self) -> status_pb2.Status:
        """As a ``google.rpc.Status``, with a ``BadRequest`` detail when there are violations."""
        details = []
        if self.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.reported_violations()
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad_request)
            details.append(packed)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=details)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
}


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def violations_of(error: pydantic.ValidationError) -> tuple[FieldViolation, ...]:
    return violations_from(error.errors())


def violations_from(
    details: typing.Iterable[typing.Mapping[str, typing.Any]], *, skip: int = 0
) -> tuple[FieldViolation, ...]:
    """Field violations from pydantic-style error details (``loc``, ``msg``, ``type``).

    ``skip`` drops leading location parts that are not fields (FastAPI's ``body``/``query``/``path``).
    """
    violations = []
    for detail in details:
        if detail.get("type") == "json_invalid":
            violations.append(FieldViolation("request", f"not valid JSON: {detail.get('msg', '')}"))
            continue
        field = _field_path(tuple(detail.get("loc", ()))[skip:]) or "request"
        violations.append(FieldViolation(field, str(detail.get("msg", "invalid"))))
    return tuple(violations)


def _broker_unavailable(error: BaseException) -> bool:
    return _caused_by(error, BrokerUnavailable)


def _caused_by(error: BaseException, cause: type[BaseException]) -> bool:
    """``error`` is, or was raised from (``__cause__``, transitively), an instance of ``cause``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, cause):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def _invalid(violations: tuple[FieldViolation, ...]) -> Status:
    summary = "; ".join(f"{v.field}: {_cut(v.description)}" for v in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return Status(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}{more}", violations)


ErrorCodes: typing.TypeAlias = typing.Mapping[type[Exception], grpc.StatusCode]
"""A service's own exceptions and the codes they stand for (``ServiceBinding(error_codes=...)``)."""


def status_for(error: Exception, request_id: str, codes: ErrorCodes | None = None) -> Status:
    """The status a caller gets for ``error``. The only mapping from exceptions to codes.

    ``codes`` maps a service's own exception types to codes (the first match, in order); rill's own
    errors and pydantic's are mapped before them, and anything unmapped is INTERNAL.
    """
    if isinstance(error, pydantic.ValidationError):
        return _invalid(violations_of(error))
    if isinstance(error, InvalidArgument):
        return _invalid(error.violations)
    if isinstance(error, NotFound):
        return Status(grpc.StatusCode.NOT_FOUND, str(error))
    if isinstance(error, Unauthenticated):
        return Status(grpc.StatusCode.UNAUTHENTICATED, str(error))
    if isinstance(error, PermissionDenied):
        return Status(grpc.StatusCode.PERMISSION_DENIED, str(error))
    if isinstance(error, SlowConsumer | TooManyCalls):
        return Status(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    if isinstance(error, RequestTimeout):
        return Status(grpc.StatusCode.DEADLINE_EXCEEDED, str(error))
    if isinstance(error, HandlerNotFound):
        return Status(grpc.StatusCode.UNIMPLEMENTED, "this method has no handler")
    if codes:
        for error_type, code in codes.items():
            if isinstance(error, error_type):
                return Status(code, str(error) or error_type.__name__)
    if _broker_unavailable(error):
        # What the client can act on (retry later); the broker's URL, the message id and the
        # exception's text are for the log, which gets the error with its traceback (expected=False).
        return Status(
            grpc.StatusCode.UNAVAILABLE,
            f"notification broker unavailable (request id {request_id})",
            expected=False,
        )
    if isinstance(error, UnitOfWorkError) and _caused_by(error, ConnectionError):
        # The store could not be reached: the item was not kept, and a retry later may succeed.
        return Status(
            grpc.StatusCode.UNAVAILABLE, f"state store unavailable (request id {request_id})", expected=False
        )
    if isinstance(error, EventHandlingError):
        return Status(
            grpc.StatusCode.INTERNAL, f"event processing failed (request id {request_id})", expected=False
        )
    return Status(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})", expected=False)
