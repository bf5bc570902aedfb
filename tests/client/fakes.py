"""A hand-written OrderService that follows a script: what the real service cannot be made to do.

Each call to ProcessOrders or GetOrder takes the next step of the script (the last step repeats):
fail with a status before anything is sent, stream some results and then end (OK or a status),
or stream some results and then hang until the client goes away. Every call is recorded, in order,
with its metadata and how it ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import typing

import grpc
from google.protobuf import timestamp_pb2

from protos.orders.v1 import orders_pb2


@dataclasses.dataclass(frozen=True)
class Step:
    """What one call does: send ``items`` results, then end with ``code`` or (``hang``) wait forever."""

    items: int = 0
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""
    hang: bool = False


def fail(code: grpc.StatusCode, message: str = "scripted failure") -> Step:
    return Step(0, code, message)


def stream(items: int, then: grpc.StatusCode = grpc.StatusCode.OK, message: str = "") -> Step:
    return Step(items, then, message)


def hang_after(items: int) -> Step:
    return Step(items, hang=True)


@dataclasses.dataclass
class CallRecord:
    method: str
    metadata: dict[str, str]
    sent: int = 0
    outcome: str = "running"  # "ok", a status name, or "cancelled"
    time_remaining: float | None = None  # of the call's deadline when the call arrived (None: none)


def _stamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.UTC))
    return stamp


class FakeOrderService:
    """The scripted service; ``calls`` records every call, ``cancelled`` is set when one is cancelled."""

    def __init__(self, *script: Step) -> None:
        self.script = list(script) or [stream(3)]
        self.calls: list[CallRecord] = []
        self.cancelled = asyncio.Event()
        self.hanging = asyncio.Event()

    def _next(self, method: str, context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> Step:
        metadata = {
            key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
        }
        self.calls.append(CallRecord(method, metadata, time_remaining=context.time_remaining()))
        return self.script[min(len(self.calls) - 1, len(self.script) - 1)]

    async def process_orders(
        self,
        request: orders_pb2.ProcessOrdersRequest,
        context: grpc.aio.ServicerContext[typing.Any, typing.Any],
    ) -> None:
        step = self._next("ProcessOrders", context)
        record = self.calls[-1]
        try:
            for index in range(step.items):
                order_id = request.order_ids[index % len(request.order_ids)]
                await context.write(
                    orders_pb2.OrderProcessedResult(
                        order_id=order_id, status="processed", processed_at=_stamp(), items_count=index
                    )
                )
                record.sent += 1
            if step.hang:
                self.hanging.set()
                await asyncio.Event().wait()  # until the client cancels or its deadline passes
            if step.code != grpc.StatusCode.OK:
                record.outcome = step.code.name
                await context.abort(step.code, step.message)
            record.outcome = "ok"
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            self.cancelled.set()
            raise

    async def get_order(
        self,
        request: orders_pb2.GetOrderRequest,
        context: grpc.aio.ServicerContext[typing.Any, typing.Any],
    ) -> orders_pb2.Order:
        step = self._next("GetOrder", context)
        if step.code != grpc.StatusCode.OK:
            self.calls[-1].outcome = step.code.name
            await context.abort(step.code, step.message)
        self.calls[-1].outcome = "ok"
        return orders_pb2.Order(
            order_id=request.order_id,
            customer_id="customer_fake",
            total_amount=1.5,
            status="processed",
            processed_at=_stamp(),
        )

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "orders.v1.OrderService",
            {
                "ProcessOrders": grpc.unary_stream_rpc_method_handler(
                    self.process_orders,
                    request_deserializer=orders_pb2.ProcessOrdersRequest.FromString,
                    response_serializer=orders_pb2.OrderProcessedResult.SerializeToString,
                ),
                "GetOrder": grpc.unary_unary_rpc_method_handler(
                    self.get_order,
                    request_deserializer=orders_pb2.GetOrderRequest.FromString,
                    response_serializer=orders_pb2.Order.SerializeToString,
                ),
            },
        )
