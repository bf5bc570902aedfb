"""Test handlers that a test drives step by step, bound to OrderService like the real ones.

Shared by the gRPC adapter tests and the HTTP edge tests: both transports serve the same binding.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import typing

import mediator
import mediator.bootstrap
from protos.orders.v1 import orders_pb2
from server.binding import Rpc, ServiceBinding
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand


class Probe:
    """What the test handlers saw, and the gates that let a test drive them step by step."""

    def __init__(self) -> None:
        self.produced: list[str] = []
        self.handled: list[str] = []
        self.finally_ran = asyncio.Event()
        self.gates: dict[str, asyncio.Event] = {}
        self.failing: str | None = None

    def gate(self, order_id: str) -> asyncio.Event:
        return self.gates.setdefault(order_id, asyncio.Event())


PROBE = Probe()


class Delivered(mediator.DomainEvent, frozen=True):
    order_id: str


class GatedOrdersHandler(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    """Waits for the test to open each order's gate (ids starting with 'g'), records its `finally`."""

    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        try:
            for order_id in request.order_ids:
                if order_id.startswith("g"):
                    await PROBE.gate(order_id).wait()
                if order_id == PROBE.failing:
                    raise RuntimeError("secret internal detail")
                PROBE.produced.append(order_id)
                self._events.append(Delivered(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id,
                    status="processed",
                    processed_at=datetime.datetime.now(datetime.UTC),
                    items_count=1,
                )
        finally:
            PROBE.finally_ran.set()


class DeliveredHandler(mediator.EventHandler[Delivered]):
    async def handle(self, event: Delivered) -> None:
        PROBE.handled.append(event.order_id)


class NoOrdersHandler(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        raise mediator.HandlerNotFound(type(request))


def fresh_probe() -> Probe:
    global PROBE
    PROBE = Probe()
    return PROBE


def gated_binding() -> ServiceBinding:
    """OrderService served by the gated handlers (GetOrder: always UNIMPLEMENTED)."""

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(ProcessOrdersCommand, GatedOrdersHandler)
        mapper.bind(GetOrderQuery, NoOrdersHandler)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Delivered, DeliveredHandler)

    streaming = mediator.bootstrap.bootstrap_streaming(commands_mapper=commands, domain_events_mapper=events)
    unary = mediator.bootstrap.bootstrap(commands_mapper=commands)
    return ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=streaming,
        unary=unary,
        rpcs=[
            Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
            Rpc("GetOrder", GetOrderQuery, OrderView),
        ],
    )


def origins(task: asyncio.Task[typing.Any]) -> list[str]:
    """The packages whose code a task runs (or whose async generator it is finalising)."""
    coroutine = task.get_coro()
    codes = [getattr(coroutine, "cr_code", None)]
    codes += [getattr(ref, "ag_code", None) for ref in gc.get_referents(coroutine)]
    return [part for code in codes if code is not None for part in code.co_filename.split("/")]


def stray_tasks(before: set[asyncio.Task[typing.Any]]) -> list[asyncio.Task[typing.Any]]:
    """Tasks started since ``before`` that are still running, other than grpc's own server loop."""
    return [task for task in asyncio.all_tasks() - before if not task.done() and "_cygrpc" not in repr(task)]
