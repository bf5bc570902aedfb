"""``RequestMediator`` (the spec's regular handlers) built by ``bootstrap.bootstrap``."""

import asyncio
import typing

import pytest

import mediator
from mediator import bootstrap
from mediator.exceptions import EventHandlerError
from mediator.message_brokers.memory import InMemoryMessageBroker
from tests.mediator.fakes import Happened, Log


class Place(mediator.Request):
    order_id: str


class Placed(mediator.Response):
    order_id: str
    handler_id: int


class Lookup(mediator.Request):
    order_id: str


def build(
    handler: type[mediator.RequestHandler[Place, Placed]],
    *event_handlers: type[mediator.EventHandler[Happened]],
    **options: typing.Any,  # bootstrap's own keywords, passed on
) -> mediator.RequestMediator:
    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Place, handler)

    def events(mapper: mediator.EventMap) -> None:
        for event_handler in event_handlers:
            mapper.bind(Happened, event_handler)

    return bootstrap.bootstrap(
        di_container=None, commands_mapper=commands, domain_events_mapper=events, **options
    )


async def test_send_returns_the_response_after_its_events_were_handled() -> None:
    log = Log()
    broker = InMemoryMessageBroker()
    returned: list[Placed] = []

    class PlaceHandler(mediator.RequestHandler[Place, Placed]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, request: Place) -> Placed:
            log("handle")
            self._events.append(Happened(n=1, tag=request.order_id))
            self._events.append(mediator.NotificationEvent[str](topic="orders", payload=request.order_id))
            returned.append(Placed(order_id=request.order_id, handler_id=id(self)))
            return returned[-1]

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            log(f"event {event.tag}")

    mediator_ = build(PlaceHandler, Slow, message_broker=broker)
    assert isinstance(mediator_, mediator.RequestMediator)

    response = await mediator_.send(Place(order_id="o1"))
    log("send returned")

    assert response is returned[0]
    assert log.entries == ["handle", "event o1", "send returned"]
    assert [message.payload for message in broker.by_topic("orders")] == ["o1"]


async def test_every_send_gets_a_fresh_handler() -> None:
    built: list[mediator.RequestHandler[Place, Placed]] = []
    both_inside = asyncio.Event()

    class PlaceHandler(mediator.RequestHandler[Place, Placed]):
        def __init__(self) -> None:
            built.append(self)
            self.order_id = ""

        async def handle(self, request: Place) -> Placed:
            self.order_id = request.order_id
            if len(built) == 2:
                both_inside.set()
            await both_inside.wait()  # both requests are being handled at once
            return Placed(order_id=self.order_id, handler_id=id(self))

    mediator_ = build(PlaceHandler)
    first, second = await asyncio.gather(
        mediator_.send(Place(order_id="a")), mediator_.send(Place(order_id="b"))
    )

    assert (first.order_id, second.order_id) == ("a", "b")
    assert len(built) == 2
    assert built[0] is not built[1]


async def test_queries_mapper_binds_into_the_same_request_map() -> None:
    class LookupHandler(mediator.RequestHandler[Lookup, Placed]):
        async def handle(self, request: Lookup) -> Placed:
            return Placed(order_id=request.order_id, handler_id=0)

    def queries(mapper: mediator.RequestMap) -> None:
        mapper.bind(Lookup, LookupHandler)

    mediator_ = bootstrap.bootstrap(queries_mapper=queries)

    assert await mediator_.send(Lookup(order_id="q")) == Placed(order_id="q", handler_id=0)


async def test_an_event_handler_failure_is_raised_by_send_after_its_siblings_finish() -> None:
    log = Log()
    boom = RuntimeError("event failed")

    class PlaceHandler(mediator.RequestHandler[Place, Placed]):
        async def handle(self, request: Place) -> Placed:
            self._events = [Happened(n=1)]
            return Placed(order_id=request.order_id, handler_id=0)

    class Fails(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            raise boom

    class Sibling(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            log("sibling finished")

    before = asyncio.all_tasks()
    mediator_ = build(
        PlaceHandler, Fails, Sibling, max_concurrent_event_handlers=2, concurrent_event_handle_enable=True
    )
    with pytest.raises(EventHandlerError) as caught:
        await mediator_.send(Place(order_id="o1"))

    assert caught.value.handler_name == Fails.__qualname__
    assert caught.value.__cause__ is boom
    assert log.entries == ["sibling finished"]
    assert asyncio.all_tasks() == before


async def test_a_handler_exception_passes_through_and_its_events_are_still_handled() -> None:
    log = Log()
    boom = KeyError("no such order")

    class PlaceHandler(mediator.RequestHandler[Place, Placed]):
        async def handle(self, request: Place) -> Placed:
            self._events = [Happened(n=1)]
            raise boom

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n}")

    with pytest.raises(KeyError) as caught:
        await build(PlaceHandler, Recorder).send(Place(order_id="o1"))

    assert caught.value is boom
    assert log.entries == ["event 1"]


async def test_cancelling_send_still_handles_the_events_already_emitted() -> None:
    log = Log()
    event_started, release = asyncio.Event(), asyncio.Event()
    before = asyncio.all_tasks()

    class PlaceHandler(mediator.RequestHandler[Place, Placed]):
        async def handle(self, request: Place) -> Placed:
            self._events = [Happened(n=1)]
            return Placed(order_id=request.order_id, handler_id=0)

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            event_started.set()
            await release.wait()
            log("event handled")

    async def send() -> None:
        try:
            await build(PlaceHandler, Gated).send(Place(order_id="o1"))
        finally:
            log("send ended")

    sender = asyncio.create_task(send())
    await event_started.wait()
    sender.cancel()  # the sender is woken first: a send that did not drain would end before the event
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await sender

    assert log.entries == ["event handled", "send ended"]
    assert asyncio.all_tasks() == before
