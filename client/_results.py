"""The results of the demo's RPCs as the client returns them: its own models, read from the contract.

They carry the same fields, types and names as the service's response models
(``server.services``), which the client does not import: a client needs the contract (``protos/``),
not the server (a test keeps the two in step). Each is read from its generated message by hand:
a few lines each, no converter to plan.
"""

from __future__ import annotations

import datetime
import typing

import pydantic
from google.protobuf import message as proto_message

from protos.files.v1 import files_pb2
from protos.orders.v1 import orders_pb2

__all__ = [
    "FileProcessedResult",
    "OrderProcessedResult",
    "OrderView",
    "file_result",
    "order_result",
    "order_view",
]


class OrderProcessedResult(pydantic.BaseModel):
    """One processed order, as ``ProcessOrders`` streams it."""

    order_id: str
    status: str
    processed_at: datetime.datetime
    items_count: int


class OrderView(pydantic.BaseModel):
    """What the service recorded for a processed order (``GetOrder``)."""

    order_id: str
    customer_id: str
    total_amount: float
    status: str
    processed_at: datetime.datetime


class FileProcessedResult(pydantic.BaseModel):
    """One hashed file, as ``ProcessFiles`` streams it (``not_found``: no such file)."""

    file_id: str
    status: typing.Literal["completed", "not_found"]
    processed_at: datetime.datetime
    size_bytes: int = 0
    sha256: str = ""


def _when(message: proto_message.Message, name: str) -> datetime.datetime | None:
    # An unset Timestamp is None, which the model refuses (the service always sets it).
    return getattr(message, name).ToDatetime(tzinfo=datetime.UTC) if message.HasField(name) else None


def order_result(message: orders_pb2.OrderProcessedResult) -> OrderProcessedResult:
    return OrderProcessedResult.model_validate(
        {
            "order_id": message.order_id,
            "status": message.status,
            "processed_at": _when(message, "processed_at"),
            "items_count": message.items_count,
        }
    )


def order_view(message: orders_pb2.Order) -> OrderView:
    return OrderView.model_validate(
        {
            "order_id": message.order_id,
            "customer_id": message.customer_id,
            "total_amount": message.total_amount,
            "status": message.status,
            "processed_at": _when(message, "processed_at"),
        }
    )


def file_result(message: files_pb2.FileProcessedResult) -> FileProcessedResult:
    return FileProcessedResult.model_validate(
        {
            "file_id": message.file_id,
            "status": message.status,
            "processed_at": _when(message, "processed_at"),
            "size_bytes": message.size_bytes,
            "sha256": message.sha256,
        }
    )
