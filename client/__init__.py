"""rill's client: an async Python library, and the ``rill`` command line (``python -m client``).

::

    from client import RillClient

    async with RillClient("127.0.0.1:50051") as client:
        async with client.process_orders(["a", "b", "c"]) as results:
            async for result in results:
                print(result.order_id, result.status)

Any RPC of any service is called with its generated classes, with the same deadlines, retries,
metadata and errors::

    async with client.stream("/reports.v1.ReportService/ExportRows", request, reports_pb2.Row) as rows:
        async for row in rows:
            ...
    export = await client.call("/reports.v1.ReportService/GetExport", request, reports_pb2.Export)

The demo's typed methods return the client's own pydantic models (``OrderProcessedResult``,
``OrderView``, ``FileProcessedResult``: the fields of the service's models, read from the contract);
failures raise the :mod:`client.exceptions` hierarchy. The client depends on the contract only
(``protos``, ``rill_wire``): ``import client`` loads neither ``server`` nor ``mediator``.
"""

from client._calls import OnRetry, ResponseStream
from client._client import DEFAULT, DEFAULT_ADDRESS, RillClient
from client._options import NO_RETRY, TLS, RetryPolicy
from client._results import FileProcessedResult, OrderProcessedResult, OrderView
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
