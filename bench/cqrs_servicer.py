"""python-cqrs 5.3.0 doing the demo's ProcessOrders behind grpc.aio: what ``bench service`` compares.

The same work as ``python -m server`` and ``bench.handwritten_servicer``, in python-cqrs's own
classes (dataclasses, its default in 5.x): a streaming command handler yields one result per order
and emits, per order, an ``OrderProcessedEvent`` (its handler records the same ``OrderView`` in the
same ``OrderBook``), an ``OrderAnalyticsEvent`` (counted in the same ``OrderAnalytics``) and an
``OrderProcessedNotification`` (python-cqrs builds its broker ``Message``, JSON payload bytes included,
and hands it to a python-cqrs broker that keeps it in the same bounded ``InMemoryMessageBroker``).
``bootstrap_streaming`` with concurrent event handling on and a limit of 10, as the service's
defaults; python-cqrs handles every event of item n before item n reaches the servicer, as strict
delivery does. The request is checked as ``ProcessOrdersCommand`` checks it (the hand-written checks).
The servicer converts each item to the protobuf message. Served by ``python -m bench._servers cqrs-orders``.
"""

from __future__ import annotations

import datetime
import logging
import typing

import cqrs
import di
import grpc
from cqrs.bootstrap import requests as cqrs_bootstrap
from cqrs.message_brokers import protocol as cqrs_protocol

from bench.handwritten_servicer import _problem
from mediator.message_brokers.memory import InMemoryMessageBroker
from protos.orders.v1 import orders_pb2
from server.services.orders import OrderAnalytics, OrderBook, OrderView

__all__ = ["handlers"]

MAX_CONCURRENT_EVENT_HANDLERS = 10  # the service's default (ServiceSettings)
Handlers: typing.TypeAlias = "dict[str, grpc.RpcMethodHandler[typing.Any, typing.Any]]"


class ProcessOrdersCommand(cqrs.Request):
    order_ids: list[str]


class OrderProcessedResult(cqrs.Response):
    order_id: str
    status: str
    processed_at: datetime.datetime
    items_count: int


class OrderProcessedEvent(cqrs.DomainEvent, frozen=True):
    order_id: str
    customer_id: str
    total_amount: float
    processed_at: datetime.datetime
    status: str = "processed"


class OrderAnalyticsEvent(cqrs.DomainEvent, frozen=True):
    order_id: str
    category: str


class OrderProcessedNotification(cqrs.NotificationEvent[dict[str, typing.Any]], frozen=True):
    event_name: str = "OrderProcessedNotification"
    topic: str = "orders.processed"


class _KeptBroker(cqrs_protocol.MessageBroker):
    """python-cqrs's broker port over the service's default broker: the messages are kept alike."""

    def __init__(self, kept: InMemoryMessageBroker) -> None:
        self.kept = kept

    async def send_message(self, message: cqrs_protocol.Message) -> None:
        await self.kept.send_message(message)  # type: ignore[arg-type]  # kept as it is, not read


def handlers(book: OrderBook, analytics: OrderAnalytics, broker: InMemoryMessageBroker) -> Handlers:
    """ProcessOrders through python-cqrs's streaming mediator, over the given state."""
    logging.getLogger("cqrs").addHandler(logging.NullHandler())  # records created, as users get them

    class ProcessOrdersCommandHandler(
        cqrs.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]
    ):
        def __init__(self) -> None:
            self._events: list[cqrs.IEvent] = []

        @property
        def events(self) -> list[cqrs.IEvent]:
            return self._events.copy()

        def clear_events(self) -> None:
            self._events.clear()

        async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
            for order_id in request.order_ids:
                processed_at = datetime.datetime.now(datetime.UTC)
                customer_id = f"customer_{order_id}"
                self._events.append(
                    OrderProcessedEvent(
                        order_id=order_id,
                        customer_id=customer_id,
                        total_amount=100.0,
                        processed_at=processed_at,
                    )
                )
                self._events.append(OrderAnalyticsEvent(order_id=order_id, category="electronics"))
                self._events.append(
                    OrderProcessedNotification(
                        payload={"order_id": order_id, "customer_id": customer_id, "total_amount": 100.0}
                    )
                )
                yield OrderProcessedResult(
                    order_id=order_id, status="processed", processed_at=processed_at, items_count=3
                )

    class OrderProcessedEventHandler(cqrs.EventHandler[OrderProcessedEvent]):
        async def handle(self, event: OrderProcessedEvent) -> None:
            book.record(
                OrderView(
                    order_id=event.order_id,
                    customer_id=event.customer_id,
                    total_amount=event.total_amount,
                    status=event.status,
                    processed_at=event.processed_at,
                )
            )

    class OrderAnalyticsEventHandler(cqrs.EventHandler[OrderAnalyticsEvent]):
        async def handle(self, event: OrderAnalyticsEvent) -> None:
            analytics.per_category[event.category] += 1

    def commands_mapper(mapper: cqrs.RequestMap) -> None:  # type: ignore[type-arg]
        mapper.bind(ProcessOrdersCommand, ProcessOrdersCommandHandler)

    def domain_events_mapper(mapper: cqrs.EventMap) -> None:  # type: ignore[type-arg]
        mapper.bind(OrderProcessedEvent, OrderProcessedEventHandler)
        mapper.bind(OrderAnalyticsEvent, OrderAnalyticsEventHandler)

    mediator = cqrs_bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=commands_mapper,
        domain_events_mapper=domain_events_mapper,
        message_broker=_KeptBroker(broker),
        max_concurrent_event_handlers=MAX_CONCURRENT_EVENT_HANDLERS,
        concurrent_event_handle_enable=True,
    )
    result = orders_pb2.OrderProcessedResult

    async def process(
        request: orders_pb2.ProcessOrdersRequest, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> typing.AsyncIterator[orders_pb2.OrderProcessedResult]:
        problem = _problem(request.order_ids)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        command = ProcessOrdersCommand(order_ids=list(request.order_ids))
        # grpc.aio never aclose()s a generator servicer (GRPC_FACTS): close the mediator's stream here.
        stream = mediator.stream(command)
        try:
            async for item in stream:
                message = result(order_id=item.order_id, status=item.status, items_count=item.items_count)
                message.processed_at.FromDatetime(item.processed_at)
                yield message
        finally:
            await stream.aclose()

    return {
        "ProcessOrders": grpc.unary_stream_rpc_method_handler(
            process,
            request_deserializer=orders_pb2.ProcessOrdersRequest.FromString,
            response_serializer=result.SerializeToString,
        )
    }
