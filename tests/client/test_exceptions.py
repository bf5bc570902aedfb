"""Statuses become the right exception, with the BadRequest violations and the request id."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import client
from client import exceptions
from client.exceptions import FieldViolation, from_rpc_error


def rpc_error(
    code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str | bytes], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), message, None)


def details(code: grpc.StatusCode, message: str, *violations: tuple[str, str]) -> bytes:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(bad_request)
    status = status_pb2.Status(code=code.value[0], message=message, details=[packed])
    serialized: bytes = status.SerializeToString()  # google.rpc ships no stubs: Any to mypy
    return serialized


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, client.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, client.NotFound),
        (grpc.StatusCode.DEADLINE_EXCEEDED, client.DeadlineExceeded),
        (grpc.StatusCode.UNAVAILABLE, client.Unavailable),
        (grpc.StatusCode.CANCELLED, client.Cancelled),
        (grpc.StatusCode.UNAUTHENTICATED, client.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, client.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, client.ResourceExhausted),
        (grpc.StatusCode.UNIMPLEMENTED, client.Unimplemented),
        (grpc.StatusCode.INTERNAL, client.Internal),
        (grpc.StatusCode.UNKNOWN, client.Internal),
        (grpc.StatusCode.DATA_LOSS, client.Internal),
        (grpc.StatusCode.ABORTED, client.RillError),
        (grpc.StatusCode.FAILED_PRECONDITION, client.RillError),
    ],
)
def test_each_code_has_its_class(code: grpc.StatusCode, error_class: type[client.RillError]) -> None:
    error = from_rpc_error(rpc_error(code, "what happened"))

    assert type(error) is error_class
    assert isinstance(error, client.RillError)
    assert (error.code, error.message, error.violations) == (code, "what happened", ())
    assert str(error) == f"{code.name}: what happened"


def test_bad_request_violations_and_the_request_id_come_from_the_trailers() -> None:
    code, message = grpc.StatusCode.INVALID_ARGUMENT, "invalid request"
    trailers = (
        (
            "grpc-status-details-bin",
            details(code, message, ("order_ids[0]", "empty"), ("order_ids[2]", "bad")),
        ),
        ("x-request-id", "req-7"),
    )

    error = from_rpc_error(rpc_error(code, message, trailers), request_id="ours")

    assert isinstance(error, client.InvalidArgument)
    assert error.violations == (
        FieldViolation("order_ids[0]", "empty"),
        FieldViolation("order_ids[2]", "bad"),
    )
    assert error.violations[0] == ("order_ids[0]", "empty")
    assert error.request_id == "req-7", "the server's echo wins"


def test_without_trailers_the_callers_request_id_is_kept() -> None:
    error = from_rpc_error(rpc_error(grpc.StatusCode.UNAVAILABLE, "no server"), request_id="ours")

    assert error.request_id == "ours"


def test_details_that_contradict_the_status_are_ignored() -> None:
    trailers = (("grpc-status-details-bin", details(grpc.StatusCode.NOT_FOUND, "other", ("f", "d"))),)

    error = from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "invalid", trailers))

    assert isinstance(error, client.InvalidArgument)
    assert error.violations == ()


def test_the_hierarchy_is_drawn_in_the_docstring() -> None:
    doc = exceptions.__doc__ or ""
    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and issubclass(obj, client.RillError):
            assert name in doc, f"{name} is missing from the hierarchy in client/exceptions.py"
