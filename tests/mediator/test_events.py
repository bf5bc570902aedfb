"""Where events go: domain events to their handlers, notifications to the broker, cascades."""

import datetime
import typing
import uuid

import pytest

import mediator
from mediator.exceptions import EventCascadeTooDeep
from mediator.message_brokers.memory import InMemoryMessageBroker
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, streaming


class Base(mediator.DomainEvent, frozen=True):
    n: int


class Child(Base, frozen=True):
    pass


class Unrelated(mediator.DomainEvent, frozen=True):
    n: int


class Shipped(mediator.Response):
    order_id: str
    parcels: int


def emitting(*events: mediator.Event) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    """A handler that emits ``events`` and yields one item."""

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            self._events = list(events)
            yield Item(n=0)

    return Handler


async def test_a_domain_event_goes_to_every_handler_bound_to_its_type_or_a_base_type() -> None:
    log = Log()

    def recorder(name: str) -> type[mediator.EventHandler[Base]]:
        class Recorder(mediator.EventHandler[Base]):
            async def handle(self, event: Base) -> None:
                log(f"{name} {type(event).__name__} {event.n}")

        return Recorder

    on_base, on_child, also_on_child, on_unrelated = (
        recorder("on_base"),
        recorder("on_child"),
        recorder("also_on_child"),
        recorder("on_unrelated"),
    )
    mediator_ = streaming(
        emitting(Child(n=1), Base(n=2)),
        {Base: [on_base], Child: [on_child, also_on_child], Unrelated: [on_unrelated]},
        concurrent_event_handle_enable=False,
    )

    await collect(mediator_.stream(Produce()))

    assert log.entries == [
        # most specific binding first, then the base class's handlers; each exactly once
        "on_child Child 1",
        "also_on_child Child 1",
        "on_base Child 1",
        "on_base Base 2",
    ]


async def test_binding_the_same_event_handler_twice_delivers_once() -> None:
    log = Log()

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n}")

    mediator_ = streaming(emitting(Happened(n=1)), {Happened: [Recorder, Recorder]})
    await collect(mediator_.stream(Produce()))

    assert log.entries == ["event 1"]


async def test_events_nobody_listens_to_are_dropped_quietly() -> None:
    items = await collect(streaming(emitting(Unrelated(n=1))).stream(Produce()))

    assert items == [Item(n=0)]


async def test_notification_events_go_to_the_broker_in_a_message_envelope() -> None:
    broker = InMemoryMessageBroker()
    named = mediator.NotificationEvent[Shipped](
        topic="orders", event_name="OrderShipped", payload=Shipped(order_id="o1", parcels=2)
    )
    unnamed = mediator.NotificationEvent[dict[str, int]](topic="audit", payload={"n": 3})
    mediator_ = streaming(emitting(named, unnamed), message_broker=broker)

    await collect(mediator_.stream(Produce()))

    first, second = broker.messages
    assert first == mediator.Message(
        message_id=named.event_id,
        message_name="OrderShipped",
        topic="orders",
        occurred_at=named.event_timestamp,
        payload={"order_id": "o1", "parcels": 2},
    )
    assert isinstance(first.message_id, uuid.UUID)
    assert first.occurred_at.tzinfo is datetime.UTC
    assert second.message_id == unnamed.event_id
    assert second.message_id != first.message_id
    assert second.message_name == type(unnamed).__name__
    assert second.topic == "audit"
    assert second.payload == {"n": 3}
    assert broker.by_topic("orders") == [first]


async def test_a_notification_event_also_reaches_event_handlers_bound_to_it() -> None:
    log = Log()
    broker = InMemoryMessageBroker()

    class Note(mediator.NotificationEvent[int], frozen=True):
        pass

    class Recorder(mediator.EventHandler[Note]):
        async def handle(self, event: Note) -> None:
            log(f"handled {event.payload}")

    await collect(
        streaming(emitting(Note(topic="t", payload=7)), {Note: [Recorder]}, message_broker=broker).stream(
            Produce()
        )
    )

    assert log.entries == ["handled 7"]
    assert [message.payload for message in broker.messages] == [7]


async def test_events_emitted_by_event_handlers_are_processed_the_same_way() -> None:
    log = Log()
    broker = InMemoryMessageBroker()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events = [Base(n=n)]
                yield Item(n=n)

    class OnBase(mediator.EventHandler[Base]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, event: Base) -> None:
            log(f"base {event.n}")
            self._events.append(Unrelated(n=event.n * 10))
            self._events.append(mediator.NotificationEvent[int](topic="cascade", payload=event.n))

    class OnUnrelated(mediator.EventHandler[Unrelated]):
        async def handle(self, event: Unrelated) -> None:
            log(f"unrelated {event.n}")

    mediator_ = streaming(Handler, {Base: [OnBase], Unrelated: [OnUnrelated]}, message_broker=broker)
    await collect(mediator_.stream(Produce(count=2)), log)

    # strict delivery: the cascade of item n is over before item n reaches the consumer
    assert log.entries == ["base 0", "unrelated 0", "consume 0", "base 1", "unrelated 10", "consume 1"]
    assert [message.payload for message in broker.by_topic("cascade")] == [0, 1]


async def test_event_handlers_emitting_in_a_cycle_end_the_stream_with_a_clear_error() -> None:
    handled = 0

    class PingPong(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            nonlocal handled
            handled += 1
            self._events = [Happened(n=event.n + 1)]

    mediator_ = streaming(emitting(Happened(n=0)), {Happened: [PingPong]}, max_event_cascade_depth=5)

    with pytest.raises(EventCascadeTooDeep) as caught:
        await collect(mediator_.stream(Produce()))

    assert caught.value.depth == 6
    assert caught.value.event == Happened(n=6)
    assert handled == 6  # depths 0..5


async def test_an_event_handler_bound_after_the_mediator_was_used_is_not_missed() -> None:
    log = Log()
    broker = InMemoryMessageBroker()

    class First(mediator.EventHandler[mediator.Event]):
        async def handle(self, event: mediator.Event) -> None:
            log(f"first {type(event).__name__}")

    class Second(mediator.EventHandler[mediator.Event]):
        async def handle(self, event: mediator.Event) -> None:
            log(f"second {type(event).__name__}")

    note = mediator.NotificationEvent[int](topic="t", payload=1)
    request_map, event_map = mediator.RequestMap(), mediator.EventMap()
    request_map.bind(Produce, emitting(Base(n=1), note))
    event_map.bind(Base, First)
    mediator_ = mediator.StreamingRequestMediator(request_map, event_map, message_broker=broker)

    await collect(mediator_.stream(Produce()))
    event_map.bind(Base, Second)
    event_map.bind(mediator.NotificationEvent, Second)
    await collect(mediator_.stream(Produce()))

    assert log.entries == ["first Base", "first Base", "second Base", "second NotificationEvent[int]"]
    assert len(broker.messages) == 2
