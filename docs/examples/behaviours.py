"""Behaviours in use: a validation stream behaviour, a timing one, and retries for event handlers.

Run it: ``python docs/examples/behaviours.py``.
"""

from __future__ import annotations

import asyncio
import time
import typing

import mediator as cqrs
from mediator import bootstrap
from mediator.behaviours import NextStream, RetryWithBackoff


class ProcessOrdersCommand(cqrs.Request):
    order_ids: list[str]


class OrderProcessedResult(cqrs.Response):
    order_id: str


class OrderProcessedEvent(cqrs.DomainEvent, frozen=True):
    order_id: str


class ProcessOrdersCommandHandler(cqrs.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]):
    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
        for order_id in request.order_ids:
            self._events.append(OrderProcessedEvent(order_id=order_id))
            yield OrderProcessedResult(order_id=order_id)


ATTEMPTS: dict[str, int] = {}


class FlakyOrderProcessedHandler(cqrs.EventHandler[OrderProcessedEvent]):
    """Fails the first time it sees each order, as a busy database would."""

    async def handle(self, event: OrderProcessedEvent) -> None:
        ATTEMPTS[event.order_id] = ATTEMPTS.get(event.order_id, 0) + 1
        if ATTEMPTS[event.order_id] == 1:
            raise ConnectionError("database busy")
        print(f"recorded {event.order_id} after {ATTEMPTS[event.order_id]} attempts")


class RejectDuplicates:
    """Validation: refuse a request that names an order twice, before the handler runs at all."""

    async def __call__(self, request: cqrs.Request, call_next: NextStream) -> typing.AsyncIterator[typing.Any]:
        if isinstance(request, ProcessOrdersCommand) and len(set(request.order_ids)) != len(request.order_ids):
            raise ValueError("order_ids: each order may be named once")
        async for item in call_next():
            yield item


async def timed(request: cqrs.Request, call_next: NextStream) -> typing.AsyncIterator[typing.Any]:
    """Instrumentation: how long the whole stream took, however it ended."""
    started = time.perf_counter()
    try:
        async for item in call_next():
            yield item
    finally:
        print(f"{type(request).__name__} took {time.perf_counter() - started:.3f} s")


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(ProcessOrdersCommand, ProcessOrdersCommandHandler)


def domain_events_mapper(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderProcessedEvent, FlakyOrderProcessedHandler)


async def main() -> None:
    mediator = bootstrap.bootstrap_streaming(
        commands_mapper=commands_mapper,
        domain_events_mapper=domain_events_mapper,
        behaviours=[timed, RejectDuplicates()],
        event_handler_behaviours=[RetryWithBackoff(attempts=3, backoff=0.01)],
    )
    async for result in mediator.stream(ProcessOrdersCommand(order_ids=["a", "b"])):
        print(f"processed {result.order_id}")
    try:
        async for _ in mediator.stream(ProcessOrdersCommand(order_ids=["a", "a"])):
            pass
    except ValueError as error:
        print(f"refused: {error}")


if __name__ == "__main__":
    asyncio.run(main())
