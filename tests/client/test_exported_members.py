"""The public surface of the client package, pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import client
from client import exceptions


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


def test_results_are_the_service_models_not_copies() -> None:
    from server.services import files, orders

    assert client.OrderProcessedResult is orders.OrderProcessedResult
    assert client.OrderView is orders.OrderView
    assert client.FileProcessedResult is files.FileProcessedResult


def test_exceptions_exports() -> None:
    assert set(exceptions.__all__) <= set(dir(exceptions))
    errors = {name for name in exceptions.__all__ if name not in ("FieldViolation", "from_rpc_error")}
    assert errors <= set(client.__all__)
