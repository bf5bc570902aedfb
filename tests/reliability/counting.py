"""Test handlers for the fault tests: they count what ran, and some event handlers fail or hang.

``ProcessOrders`` here yields one item per order id (an id ``n<count>`` stands for ``count`` items, so
that a request can be longer than the request limit allows ids), emits one ``Counted`` event per item,
and counts its ``finally``. ``Counted`` events of an id starting with ``raise`` make their handler
raise; of an id starting with ``hang``, make it wait until cancelled (its ``event_handler_timeout``).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import typing

import mediator
from protos.orders.v1 import orders_pb2
from server import Rpc, ServiceBinding, create_server
from server.limits import LimitSettings
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand
from server.testing import isolated_settings


class Counts:
    """What the handlers did, shared by every handler of one server."""

    def __init__(self) -> None:
        self.produced: list[str] = []
        self.handled: collections.Counter[str] = collections.Counter()
        self.started = 0
        self.finally_runs = 0
        self.finally_ran = asyncio.Event()
        self.hang_cancelled = asyncio.Event()


COUNTS = Counts()


class Counted(mediator.DomainEvent, frozen=True):
    order_id: str


def _expand(order_ids: typing.Sequence[str]) -> typing.Iterator[str]:
    for order_id in order_ids:
        if order_id.startswith("n") and order_id[1:].isdigit():
            yield from (f"{order_id}-{index}" for index in range(int(order_id[1:])))
        else:
            yield order_id


class CountingOrdersHandler(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        COUNTS.started += 1
        try:
            for order_id in _expand(request.order_ids):
                COUNTS.produced.append(order_id)
                self._events.append(Counted(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id,
                    status="processed",
                    processed_at=datetime.datetime.now(datetime.UTC),
                    items_count=1,
                )
        finally:
            COUNTS.finally_runs += 1
            COUNTS.finally_ran.set()


class CountedHandler(mediator.EventHandler[Counted]):
    async def handle(self, event: Counted) -> None:
        if event.order_id.startswith("raise"):
            raise RuntimeError(f"event handler failed on {event.order_id}")
        if event.order_id.startswith("hang"):
            try:
                await asyncio.Event().wait()
            finally:
                COUNTS.hang_cancelled.set()
        COUNTS.handled[event.order_id] += 1


class NoOrders(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        raise mediator.HandlerNotFound(type(request))


def counting_binding(*, event_handler_timeout: float | None = None) -> ServiceBinding:
    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(ProcessOrdersCommand, CountingOrdersHandler)
        mapper.bind(GetOrderQuery, NoOrders)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Counted, CountedHandler)

    streaming = mediator.bootstrap.bootstrap_streaming(
        commands_mapper=commands,
        domain_events_mapper=events,
        event_handler_timeout=event_handler_timeout,
        drain_timeout=5.0,
    )
    return ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=streaming,
        unary=mediator.bootstrap.bootstrap(commands_mapper=commands),
        rpcs=[
            Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
            Rpc("GetOrder", GetOrderQuery, OrderView),
        ],
    )


class CountingServer:
    """The counting binding served as production serves any binding, on 127.0.0.1:<free port>."""

    def __init__(
        self, *, stall_timeout: float | None = None, event_handler_timeout: float | None = None
    ) -> None:
        global COUNTS
        COUNTS = self.counts = Counts()
        settings = isolated_settings(limits=LimitSettings(stall_timeout=stall_timeout))
        self.server = create_server(
            settings, services=[counting_binding(event_handler_timeout=event_handler_timeout)]
        )
        self.calls = self.server.calls
        self.address = self.server.address

    async def __aenter__(self) -> CountingServer:
        await self.server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.stop(grace=0)
