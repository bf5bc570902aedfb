"""A small application of the platform for its tests: OrderService served by handlers of its own.

Its event handler really suspends and records every event it handled, and its stream handler records
in which task its ``finally`` ran. ``services(settings)`` builds it from the settings the way a team's
``--app`` does; ``BINDINGS`` is the same built once from the defaults.
"""

from __future__ import annotations

import asyncio
import datetime
import typing

import grpc

import mediator
from mediator import bootstrap
from protos.orders.v1 import orders_pb2
from server import Rpc, ServiceBinding, Settings
from server.exceptions import NotFound
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand


class Recorder:
    """What the app's handlers did, for the test that runs it in-process."""

    def __init__(self, *, gated: bool) -> None:
        self.handled: list[str] = []
        self.stream_task: asyncio.Task[typing.Any] | None = None
        self.finally_task: asyncio.Task[typing.Any] | None = None
        self.finally_ran = asyncio.Event()
        self.release_events = asyncio.Event()
        if not gated:
            self.release_events.set()


RECORD = Recorder(gated=False)  # as served by `python -m server --app`: events are handled at once


class OutOfStock(Exception):
    """The app's own error: mapped to FAILED_PRECONDITION by its binding's ``error_codes``."""


class Shipped(mediator.DomainEvent, frozen=True):
    order_id: str


class ShipOrders(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        RECORD.stream_task = asyncio.current_task()
        try:
            for order_id in request.order_ids:
                if order_id == "out-of-stock":
                    raise OutOfStock(f"nothing left to ship for {order_id}")
                self._events.append(Shipped(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id,
                    status="shipped",
                    processed_at=datetime.datetime.now(datetime.UTC),
                    items_count=1,
                )
        finally:
            RECORD.finally_task = asyncio.current_task()
            RECORD.finally_ran.set()


class RecordShipped(mediator.EventHandler[Shipped]):
    async def handle(self, event: Shipped) -> None:
        await RECORD.release_events.wait()  # really suspends, until the test lets it go on
        await asyncio.sleep(0)
        RECORD.handled.append(event.order_id)


class LookUp(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        if request.order_id not in RECORD.handled:
            raise NotFound(f"order {request.order_id!r} was never shipped")
        return OrderView(
            order_id=request.order_id,
            customer_id="c",
            total_amount=1.0,
            status="shipped",
            processed_at=datetime.datetime.now(datetime.UTC),
        )


def commands(mapper: mediator.RequestMap) -> None:
    mapper.bind(ProcessOrdersCommand, ShipOrders)
    mapper.bind(GetOrderQuery, LookUp)


def events(mapper: mediator.EventMap) -> None:
    mapper.bind(Shipped, RecordShipped)


def services(settings: Settings) -> list[ServiceBinding]:
    """The app's bindings, its event processing configured by ``[services.shipping]``."""
    options = settings.service("shipping")
    return [
        ServiceBinding(
            orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
            streaming=bootstrap.bootstrap_streaming(
                commands_mapper=commands, domain_events_mapper=events, **options.streaming_options()
            ),
            unary=bootstrap.bootstrap(commands_mapper=commands, **options.unary_options()),
            rpcs=[
                Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
                Rpc("GetOrder", GetOrderQuery, OrderView),
            ],
            settings_name="shipping",
            error_codes={OutOfStock: grpc.StatusCode.FAILED_PRECONDITION},
        )
    ]


def fresh_record() -> Recorder:
    """A new record whose event handlers wait for ``release_events``."""
    global RECORD
    RECORD = Recorder(gated=True)
    return RECORD
