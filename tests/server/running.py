"""A test handler that streams freely (no gate), for the HTTP edge's disconnect and fairness tests.

``ProcessOrders`` yields one item per id as fast as it can: without suspending at all (like the real
handler), or awaiting a real suspension per item (``suspend``); ``endless``, it cycles over the ids
until it is stopped (more than a socket's buffers hold). It records, at the server, where and
when its ``finally`` ran: in which task, and whether its call was still counted in flight.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import typing

import mediator
import mediator.bootstrap
from protos.orders.v1 import orders_pb2
from server.binding import Rpc, ServiceBinding
from server.calls import CallRegistry
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand


class Record:
    """What the running handler did, seen from the server."""

    def __init__(self, calls: CallRegistry, *, suspend: bool, endless: bool, pace: float) -> None:
        self.calls = calls
        self.suspend = suspend
        self.pace = pace
        self.endless = endless
        self.produced = 0
        self.handled = 0
        self.started_in: asyncio.Task[typing.Any] | None = None
        self.finally_in: asyncio.Task[typing.Any] | None = None
        self.in_flight_at_finally: int | None = None
        self.finally_ran = asyncio.Event()


RECORD: Record | None = None


def _record() -> Record:
    assert RECORD is not None, "use running_binding() first"
    return RECORD


class Ran(mediator.DomainEvent, frozen=True):
    order_id: str


class RunningOrdersHandler(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        record = _record()
        record.started_in = asyncio.current_task()
        try:
            ids = itertools.cycle(request.order_ids) if record.endless else request.order_ids
            for order_id in ids:
                if record.suspend:
                    await asyncio.sleep(record.pace)  # a real suspension, as an I/O-bound handler makes
                record.produced += 1
                self._events.append(Ran(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id,
                    status="processed",
                    processed_at=datetime.datetime.now(datetime.UTC),
                    items_count=1,
                )
        finally:
            record.finally_in = asyncio.current_task()
            record.in_flight_at_finally = record.calls.active
            record.finally_ran.set()


class RanHandler(mediator.EventHandler[Ran]):
    async def handle(self, event: Ran) -> None:
        record = _record()
        if record.suspend:
            await asyncio.sleep(0)
        record.handled += 1


class NoOrdersHandler(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        raise mediator.HandlerNotFound(type(request))


def running_binding(
    calls: CallRegistry, *, suspend: bool = False, endless: bool = False, pace: float = 0.0
) -> tuple[ServiceBinding, Record]:
    """OrderService served by the running handler (``endless``: cycling over the ids until stopped;
    ``pace``: the seconds each suspension lasts, for a page that must stay responsive), and what
    it records."""
    global RECORD
    RECORD = Record(calls, suspend=suspend, endless=endless, pace=pace)

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(ProcessOrdersCommand, RunningOrdersHandler)
        mapper.bind(GetOrderQuery, NoOrdersHandler)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Ran, RanHandler)

    streaming = mediator.bootstrap.bootstrap_streaming(
        commands_mapper=commands, domain_events_mapper=events, event_delivery="overlapped"
    )
    unary = mediator.bootstrap.bootstrap(commands_mapper=commands)
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=streaming,
        unary=unary,
        rpcs=[
            Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
            Rpc("GetOrder", GetOrderQuery, OrderView),
        ],
    )
    return binding, RECORD
