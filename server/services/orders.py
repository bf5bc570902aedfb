"""Orders, as in the spec: process a batch of orders as a stream; read back what was recorded.

``ProcessOrders`` yields one ``OrderProcessedResult`` per order and emits, per order, the spec's
``OrderProcessedEvent`` (recorded by its handler, in the store's ``orders`` table or, without a
store, in an :class:`OrderBook`: that is what ``GetOrder`` reads) and ``OrderAnalyticsEvent``
(counted per category), plus an ``OrderProcessedNotification`` for the message broker.
"""

from __future__ import annotations

import collections
import datetime
import typing

import pydantic

import mediator
from server.exceptions import NotFound

__all__ = [
    "GetOrderQuery",
    "GetOrderQueryHandler",
    "OrderAnalytics",
    "OrderAnalyticsEvent",
    "OrderAnalyticsEventHandler",
    "OrderBook",
    "OrderProcessedEvent",
    "OrderProcessedEventHandler",
    "OrderProcessedNotification",
    "OrderProcessedResult",
    "OrderRecords",
    "OrderView",
    "ProcessOrdersCommand",
    "ProcessOrdersCommandHandler",
]

MAX_ORDERS_PER_REQUEST = 10_000
MAX_ORDER_ID_LENGTH = 128

OrderId = typing.Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=MAX_ORDER_ID_LENGTH, pattern=r"^[^\x00-\x1f]+$")
]


class OrderProcessedResult(mediator.Response):
    order_id: str
    status: str
    processed_at: datetime.datetime
    items_count: int


class ProcessOrdersCommand(mediator.Request[OrderProcessedResult]):
    order_ids: typing.Annotated[
        list[OrderId], pydantic.Field(min_length=1, max_length=MAX_ORDERS_PER_REQUEST)
    ]


class OrderProcessedEvent(mediator.DomainEvent, frozen=True):
    order_id: str
    customer_id: str
    total_amount: float
    status: str = "processed"
    processed_at: datetime.datetime


class OrderAnalyticsEvent(mediator.DomainEvent, frozen=True):
    order_id: str
    category: str


class OrderSummary(pydantic.BaseModel, frozen=True):
    order_id: str
    customer_id: str
    total_amount: float


class OrderProcessedNotification(mediator.NotificationEvent[OrderSummary], frozen=True):
    topic: str = "orders.processed"


class OrderView(mediator.Response):
    order_id: str
    customer_id: str
    total_amount: float
    status: str
    processed_at: datetime.datetime


class GetOrderQuery(mediator.Request[OrderView]):
    order_id: OrderId


class OrderRecords(typing.Protocol):
    """Where processed orders are kept: the store's ``orders`` table
    (:class:`server.store.read_models.StoredOrderBook`) or, without a store, an :class:`OrderBook`."""

    async def save(self, order: OrderView) -> None:
        """Record ``order`` (in the current unit of work, if the records are a store's)."""
        ...

    async def load(self, order_id: str) -> OrderView:
        """The order recorded under ``order_id``; ``NotFound`` if there is none."""
        ...


class OrderBook:
    """What the service knows about processed orders: the ``capacity`` most recently recorded.

    In memory (``database_url = "memory"``, for tests), so bounded: a service that runs for weeks
    must not keep every order it ever saw (~1.5 KiB each). Recording an order again makes it the
    most recent; beyond ``capacity`` the oldest is forgotten and ``GetOrder`` answers NOT_FOUND for
    it. ``recorded`` counts every order recorded since start.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("an OrderBook keeps at least one order")
        self.capacity = capacity
        self.recorded = 0
        self._orders: collections.OrderedDict[str, OrderView] = collections.OrderedDict()

    def record(self, order: OrderView) -> None:
        self.recorded += 1
        self._orders[order.order_id] = order
        self._orders.move_to_end(order.order_id)
        if len(self._orders) > self.capacity:
            self._orders.popitem(last=False)

    def get(self, order_id: str) -> OrderView:
        try:
            return self._orders[order_id]
        except KeyError:
            raise NotFound(
                f"order {order_id!r} is not known (the service keeps the last {self.capacity:,} orders)"
            ) from None

    def __len__(self) -> int:
        return len(self._orders)

    async def save(self, order: OrderView) -> None:
        self.record(order)

    async def load(self, order_id: str) -> OrderView:
        return self.get(order_id)


class OrderAnalytics:
    """Orders seen per category."""

    def __init__(self) -> None:
        self.per_category: collections.Counter[str] = collections.Counter()


class ProcessOrdersCommandHandler(
    mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]
):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []  # `events` and `clear_events()` come with the base class

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        for order_id in request.order_ids:
            processed_at = datetime.datetime.now(datetime.UTC)
            customer_id = f"customer_{order_id}"
            self._events.append(
                OrderProcessedEvent(
                    order_id=order_id, customer_id=customer_id, total_amount=100.0, processed_at=processed_at
                )
            )
            self._events.append(OrderAnalyticsEvent(order_id=order_id, category="electronics"))
            self._events.append(
                OrderProcessedNotification(
                    payload=OrderSummary(order_id=order_id, customer_id=customer_id, total_amount=100.0)
                )
            )
            yield OrderProcessedResult(
                order_id=order_id, status="processed", processed_at=processed_at, items_count=3
            )


class OrderProcessedEventHandler(mediator.EventHandler[OrderProcessedEvent]):
    def __init__(self, book: OrderRecords) -> None:
        self._book = book

    async def handle(self, event: OrderProcessedEvent) -> None:
        await self._book.save(
            OrderView(
                order_id=event.order_id,
                customer_id=event.customer_id,
                total_amount=event.total_amount,
                status=event.status,
                processed_at=event.processed_at,
            )
        )


class OrderAnalyticsEventHandler(mediator.EventHandler[OrderAnalyticsEvent]):
    def __init__(self, analytics: OrderAnalytics) -> None:
        self._analytics = analytics

    async def handle(self, event: OrderAnalyticsEvent) -> None:
        self._analytics.per_category[event.category] += 1


class GetOrderQueryHandler(mediator.RequestHandler[GetOrderQuery, OrderView]):
    def __init__(self, book: OrderRecords) -> None:
        self._book = book

    async def handle(self, request: GetOrderQuery) -> OrderView:
        return await self._book.load(request.order_id)


def commands_mapper(mapper: mediator.RequestMap) -> None:
    mapper.bind(ProcessOrdersCommand, ProcessOrdersCommandHandler)
    mapper.bind(GetOrderQuery, GetOrderQueryHandler)


def domain_events_mapper(mapper: mediator.EventMap) -> None:
    mapper.bind(OrderProcessedEvent, OrderProcessedEventHandler)
    mapper.bind(OrderAnalyticsEvent, OrderAnalyticsEventHandler)
