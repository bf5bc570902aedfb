"""The public surface of the client package, pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import pydantic
import pytest

import client
from client import exceptions
from server.services import files, orders


def test_client_exports() -> None:
    assert sorted(client.__all__) == sorted(
        [
            "DEFAULT",
            "DEFAULT_ADDRESS",
            "NO_RETRY",
            "TLS",
            "Cancelled",
            "DeadlineExceeded",
            "FieldViolation",
            "FileProcessedResult",
            "Internal",
            "InvalidArgument",
            "NotFound",
            "OnRetry",
            "OrderProcessedResult",
            "OrderView",
            "PermissionDenied",
            "ResourceExhausted",
            "ResponseStream",
            "RetryPolicy",
            "RillClient",
            "RillError",
            "Unauthenticated",
            "Unavailable",
            "Unimplemented",
        ]
    )
    for name in client.__all__:
        assert getattr(client, name) is not None


@pytest.mark.parametrize(
    ("ours", "services"),
    [
        (client.OrderProcessedResult, orders.OrderProcessedResult),
        (client.OrderView, orders.OrderView),
        (client.FileProcessedResult, files.FileProcessedResult),
    ],
)
def test_results_carry_the_service_models_fields(
    ours: type[pydantic.BaseModel], services: type[pydantic.BaseModel]
) -> None:
    # The client has its own copies (it imports the contract, not the server): they must not drift.
    assert ours.model_json_schema() == {**services.model_json_schema(), "description": ours.__doc__}


def test_exceptions_exports() -> None:
    assert set(exceptions.__all__) <= set(dir(exceptions))
    errors = {name for name in exceptions.__all__ if name not in ("FieldViolation", "from_rpc_error")}
    assert errors <= set(client.__all__)
