"""A call's :class:`server.errors.Status` as the error of the Connect and gRPC-Web protocols.

Which exception is which status is decided in :func:`server.errors.status_for` only; here the
status changes its spelling: the code becomes Connect's (``invalid_argument``), and the
``google.rpc.BadRequest`` of field violations becomes an error detail (Connect's error JSON
``details``, gRPC-Web's ``grpc-status-details-bin`` trailer).
"""

from __future__ import annotations

from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from protobuf.wkt import Any

from server.errors import Status

__all__ = ["connect_error"]

# grpc.StatusCode names are Connect's codes in upper case, but for CANCELLED (Connect: canceled).
_CODES = {code.name: code for code in Code} | {"CANCELLED": Code.CANCELED}


def connect_error(status: Status) -> ConnectError:
    """The ``ConnectError`` connectrpc sends for ``status``."""
    details = [
        # Packed by google.protobuf, carried by connectrpc's own runtime (protobuf-py) as bytes.
        ErrorDetail(Any(type_url=detail.type_url, value=detail.value))
        for detail in status.to_rpc_status().details
    ]
    return ConnectError(_CODES.get(status.code.name, Code.UNKNOWN), status.message, details)
