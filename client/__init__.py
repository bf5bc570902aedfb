"""rill's client: an async Python library, and the ``rill`` command line (``python -m client``).

::

    from client import RillClient

    async with RillClient("127.0.0.1:50051") as client:
        async with client.process_orders(["a", "b", "c"]) as results:
            async for result in results:
                print(result.order_id, result.status)

Results are the service's own pydantic models (``OrderProcessedResult``, ``OrderView``,
``FileProcessedResult``); failures raise the :mod:`client.exceptions` hierarchy.
"""

from client._calls import OnRetry, ResponseStream
from client._client import DEFAULT, DEFAULT_ADDRESS, RillClient
from client._options import NO_RETRY, TLS, RetryPolicy
from client.exceptions import (
    Cancelled,
    DeadlineExceeded,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RillError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from server.services.files import FileProcessedResult
from server.services.orders import OrderProcessedResult, OrderView

__all__ = [
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
