"""A real server (gRPC and HTTP edge, on free ports) whose OrderService is served by test handlers.

Order ids drive the handlers: ``g...`` waits for its gate (so that a test can cancel mid-stream),
``fail...`` makes ``AuditHandler`` raise on its event. Every item emits one ``Step`` (handled by
``StepHandler`` and ``AuditHandler``) and one ``Note`` (a notification: the broker publishes it).
The server is wired like :class:`server.RillServer`: one ``CallRegistry`` with metrics and tracing,
mediators observed through ``Metrics.mediator`` / ``Tracing.observer``, ``/metrics`` on the HTTP app.
"""

from __future__ import annotations

import asyncio
import datetime
import typing

import pydantic

import mediator
from mediator.message_brokers.memory import InMemoryMessageBroker
from protos.orders.v1 import orders_pb2
from server import Rpc, ServiceBinding, create_server
from server.services.orders import GetOrderQuery, OrderProcessedResult, OrderView, ProcessOrdersCommand
from server.testing import isolated_settings
from server.tracing import Tracing

GATES: dict[str, asyncio.Event] = {}


def gate(order_id: str) -> asyncio.Event:
    return GATES.setdefault(order_id, asyncio.Event())


class Step(mediator.DomainEvent, frozen=True):
    order_id: str


class NoteBody(pydantic.BaseModel, frozen=True):
    order_id: str


class Note(mediator.NotificationEvent[NoteBody], frozen=True):
    topic: str = "tests.note"


class StepsHandler(mediator.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        for order_id in request.order_ids:
            if order_id.startswith("g"):
                await gate(order_id).wait()
            self._events.append(Step(order_id=order_id))
            self._events.append(Note(payload=NoteBody(order_id=order_id)))
            yield OrderProcessedResult(
                order_id=order_id,
                status="processed",
                processed_at=datetime.datetime.now(datetime.UTC),
                items_count=1,
            )


class StepHandler(mediator.EventHandler[Step]):
    async def handle(self, event: Step) -> None:
        await asyncio.sleep(0)


class AuditHandler(mediator.EventHandler[Step]):
    async def handle(self, event: Step) -> None:
        if event.order_id.startswith("fail"):
            raise RuntimeError(f"audit refused {event.order_id}")


class NoOrders(mediator.RequestHandler[GetOrderQuery, OrderView]):
    async def handle(self, request: GetOrderQuery) -> OrderView:
        raise mediator.HandlerNotFound(type(request))


class ObservedServer:
    """The steps binding served as production serves any binding, gRPC and HTTP on free ports."""

    def __init__(self, *, tracing: Tracing | None = None) -> None:
        self.broker = InMemoryMessageBroker()

        def commands(mapper: mediator.RequestMap) -> None:
            mapper.bind(ProcessOrdersCommand, StepsHandler)
            mapper.bind(GetOrderQuery, NoOrders)

        def events(mapper: mediator.EventMap) -> None:
            mapper.bind(Step, StepHandler)
            mapper.bind(Step, AuditHandler)

        self.streaming = mediator.bootstrap.bootstrap_streaming(
            commands_mapper=commands, domain_events_mapper=events, message_broker=self.broker
        )
        unary = mediator.bootstrap.bootstrap(commands_mapper=commands, message_broker=self.broker)
        binding = ServiceBinding(
            orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
            streaming=self.streaming,
            unary=unary,
            rpcs=[
                Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
                Rpc("GetOrder", GetOrderQuery, OrderView),
            ],
        )
        self.server = create_server(isolated_settings(http=True), services=[binding], tracing=tracing)
        self.tracing = tracing
        self.calls = self.server.calls
        self.address = self.server.address
        assert self.server.http is not None
        self.url = f"http://{self.server.http.address}"

    async def __aenter__(self) -> ObservedServer:
        GATES.clear()
        await self.server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.stop(0)
