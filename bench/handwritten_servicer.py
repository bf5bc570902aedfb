"""The anchor of ``bench service``: the demo's OrderService written by hand on grpc.aio, no mediator.

What a team would write instead of rill, doing per order exactly what ``python -m server``'s
ProcessOrders does (``server/services/orders.py``, ``server/demo.py``): the same checks on the request
(1-10,000 ids, each 1-128 characters without control characters; INVALID_ARGUMENT otherwise), then
per order the same result message, the same ``OrderView`` recorded in the same ``OrderBook`` (the
demo's bounded in-memory store, ``limits.orders_kept``), one count per category in the same
``OrderAnalytics``, and the same notification envelope (``mediator.message_brokers.protocol.Message``,
topic ``orders.processed``, the ``OrderSummary`` payload as JSON) handed to the same broker (the
default's ``InMemoryMessageBroker``), all before the result is yielded, as strict delivery does.
GetOrder reads the book back. It is served by ``python -m bench._servers handwritten``.

With a store (``python -m bench._servers handwritten --store``: the service's default since the store
landed, the embedded SQLite file in ``--state-dir``), it makes the service's store calls instead: per
order one unit of work through the store's group committer holding the same two writes the demo's
unit holds (the ``orders`` row upserted, the notification's outbox row inserted), committed before
the result is yielded, as strict delivery commits an item's unit before the item goes out; each
commit wakes the same outbox relay the service runs (``server.store.relay.OutboxRelay``), which
publishes the rows to the broker: without it the notifications would never reach the broker, and
the service's relay queries and transactions would have no counterpart.

What it leaves out is what the service adds around that work: metrics, the per-call log line, the
stall watch, admission, health and reflection.
"""

from __future__ import annotations

import datetime
import re
import typing
import uuid

import grpc

from mediator.message_brokers.protocol import Message, MessageBroker
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.exceptions import NotFound
from server.services.orders import (
    MAX_ORDER_ID_LENGTH,
    MAX_ORDERS_PER_REQUEST,
    OrderAnalytics,
    OrderBook,
    OrderView,
)

__all__ = ["OrderServicer"]

_VALID_ID = re.compile(r"[^\x00-\x1f]+")
Context: typing.TypeAlias = "grpc.aio.ServicerContext[typing.Any, typing.Any]"


def _problem(order_ids: typing.Sequence[str]) -> str:
    """Why the request is invalid, or "" (the checks of ``ProcessOrdersCommand``)."""
    if not 1 <= len(order_ids) <= MAX_ORDERS_PER_REQUEST:
        return f"order_ids: 1 to {MAX_ORDERS_PER_REQUEST:,} ids, not {len(order_ids):,}"
    for index, order_id in enumerate(order_ids):
        if len(order_id) > MAX_ORDER_ID_LENGTH or not _VALID_ID.fullmatch(order_id):
            return f"order_ids[{index}]: 1 to {MAX_ORDER_ID_LENGTH} characters, no control characters"
    return ""


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    """ProcessOrders and GetOrder over the demo's state, by hand."""

    def __init__(
        self,
        book: OrderBook,
        analytics: OrderAnalytics,
        broker: MessageBroker,
        store: typing.Any = None,
        relay: typing.Any = None,
    ) -> None:
        self.book = book
        self.analytics = analytics
        self.broker = broker
        self.store = store
        """A started :class:`server.store.Store`: the order and its notification go there instead."""
        self.relay = relay
        """The started :class:`server.store.relay.OutboxRelay` of ``store``, woken after each commit."""
        if store is not None:
            from server.store.schema import outbox

            # One statement object for every call, as the service's OutboxBroker has: the committer
            # sends consecutive writes through the same statement as one executemany, so a fresh
            # insert() per call made a group of 200 streams' units 200 outbox INSERTs instead of one.
            self.outbox_insert = outbox.insert()

    async def ProcessOrders(
        self, request: orders_pb2.ProcessOrdersRequest, context: Context
    ) -> typing.AsyncIterator[orders_pb2.OrderProcessedResult]:
        order_ids = request.order_ids
        problem = _problem(order_ids)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        book, per_category, broker = self.book, self.analytics.per_category, self.broker
        store, relay = self.store, self.relay
        if store is not None:
            from server.store.outbox_broker import outbox_row
            from server.store.schema import orders
            from server.store.units import Write, upsert

            insert = self.outbox_insert
        for order_id in order_ids:
            processed_at = datetime.datetime.now(datetime.UTC)
            customer_id = f"customer_{order_id}"
            view = OrderView(
                order_id=order_id,
                customer_id=customer_id,
                total_amount=100.0,
                status="processed",
                processed_at=processed_at,
            )
            per_category["electronics"] += 1
            message = Message(
                message_id=uuid.uuid4(),
                message_name="OrderProcessedNotification",
                topic="orders.processed",
                occurred_at=datetime.datetime.now(datetime.UTC),
                payload={"order_id": order_id, "customer_id": customer_id, "total_amount": 100.0},
            )
            if store is not None:  # one unit: both rows, or neither; committed before the yield
                await store.write(
                    upsert(orders, view.model_dump()),
                    Write(insert, outbox_row(message)),
                    after_commit=relay.notify,  # as the OutboxBroker's: once per committed group
                )
            else:
                book.record(view)
                await broker.send_message(message)
            result = orders_pb2.OrderProcessedResult(order_id=order_id, status="processed", items_count=3)
            result.processed_at.FromDatetime(processed_at)
            yield result

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: Context) -> orders_pb2.Order:
        try:
            view = self.book.get(request.order_id)
        except NotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        order = orders_pb2.Order(
            order_id=view.order_id,
            customer_id=view.customer_id,
            total_amount=view.total_amount,
            status=view.status,
        )
        order.processed_at.FromDatetime(view.processed_at)
        return order
