"""The basic contract: items in order, a fresh handler per stream, events taken after each yield."""

import asyncio
import inspect
import typing

import mediator
from mediator import bootstrap
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, streaming


async def test_items_reach_the_consumer_in_the_order_the_handler_yields_them() -> None:
    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                yield Item(n=n, tag=request.tag)

    items = await collect(streaming(Handler).stream(Produce(count=4, tag="t")))

    assert items == [Item(n=0, tag="t"), Item(n=1, tag="t"), Item(n=2, tag="t"), Item(n=3, tag="t")]


async def test_two_interleaved_streams_get_a_fresh_handler_each() -> None:
    built: list[int] = []
    handled: list[tuple[str, int]] = []

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        def __init__(self) -> None:
            built.append(id(self))
            self._events: list[mediator.Event] = []
            self.produced = 0

        @property
        def events(self) -> list[mediator.Event]:
            return self._events.copy()

        def clear_events(self) -> None:
            self._events.clear()

        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for _ in range(request.count):
                self.produced += 1
                self._events.append(Happened(n=self.produced, tag=request.tag))
                yield Item(n=self.produced, tag=request.tag)

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            handled.append((event.tag, event.n))

    mediator_ = streaming(Handler, {Happened: [Recorder]})
    a = mediator_.stream(Produce(count=3, tag="a"))
    b = mediator_.stream(Produce(count=3, tag="b"))
    got: dict[str, list[int]] = {"a": [], "b": []}
    for _ in range(3):  # both handlers are alive at once, driven in turn
        for tag, stream in (("a", a), ("b", b)):
            item = await anext(stream)
            assert item.tag == tag
            got[tag].append(item.n)
    assert [item async for item in a] == []
    assert [item async for item in b] == []

    assert len(built) == 2
    assert len(set(built)) == 2
    assert got == {"a": [1, 2, 3], "b": [1, 2, 3]}
    assert handled == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]


async def test_two_concurrent_streams_never_see_each_others_events() -> None:
    taken: list[tuple[str, list[str]]] = []

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        @property
        def events(self) -> list[mediator.Event]:
            return self._events.copy()

        def clear_events(self) -> None:
            self._events.clear()

        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events.append(Happened(n=n, tag=request.tag))
                await asyncio.sleep(0)  # let the other stream run in between
                taken.append((request.tag, [e.tag for e in self._events if isinstance(e, Happened)]))
                yield Item(n=n, tag=request.tag)

    mediator_ = streaming(Handler)
    a, b = await asyncio.gather(
        collect(mediator_.stream(Produce(count=5, tag="a"))),
        collect(mediator_.stream(Produce(count=5, tag="b"))),
    )

    assert [item.tag for item in a] == ["a"] * 5
    assert [item.tag for item in b] == ["b"] * 5
    # every handler saw exactly one pending event, its own, each time it yielded
    assert sorted(taken) == sorted([("a", ["a"])] * 5 + [("b", ["b"])] * 5)


async def test_events_are_taken_after_each_yield_and_cleared() -> None:
    log = Log()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        @property
        def events(self) -> list[mediator.Event]:
            log(f"read events {[e.n for e in self._events if isinstance(e, Happened)]}")
            return self._events.copy()

        def clear_events(self) -> None:
            log("clear events")
            self._events.clear()

        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events.append(Happened(n=n))
                log(f"yield {n}")
                yield Item(n=n)
                log(f"resume {n}")

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n}")

    await collect(streaming(Handler, {Happened: [Recorder]}).stream(Produce(count=2)), log)

    assert log.entries == [
        "yield 0",
        "read events [0]",
        "clear events",
        "event 0",
        "consume 0",
        "resume 0",
        "yield 1",
        "read events [1]",
        "clear events",
        "event 1",
        "consume 1",
        "resume 1",
        "read events []",  # after the last yield: nothing more was emitted
    ]


async def test_events_emitted_after_the_last_yield_are_handled_before_the_stream_ends() -> None:
    log = Log()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            self._events: list[mediator.Event] = []
            yield Item(n=0)
            self._events.append(Happened(n=99))
            log("handler returns")

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            log(f"event {event.n}")

    await collect(streaming(Handler, {Happened: [Recorder]}).stream(Produce()), log)
    log("stream ended")

    assert log.entries == ["consume 0", "handler returns", "event 99", "stream ended"]


async def test_handler_events_default_to_self_events_list() -> None:
    # A handler that keeps events in self._events without defining `events`/`clear_events`.
    seen: list[int] = []

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events.append(Happened(n=n))
                yield Item(n=n)
                assert self._events == []

    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            seen.append(event.n)

    await collect(streaming(Handler, {Happened: [Recorder]}).stream(Produce(count=3)))

    assert seen == [0, 1, 2]


def test_bootstrap_streaming_has_the_specs_defaults() -> None:
    parameters = inspect.signature(bootstrap.bootstrap_streaming).parameters
    assert parameters["message_broker"].default is None
    assert parameters["max_concurrent_event_handlers"].default == 10
    assert parameters["concurrent_event_handle_enable"].default is True

    mediator_ = bootstrap.bootstrap_streaming(di_container=None, commands_mapper=lambda mapper: None)

    assert isinstance(mediator_, mediator.StreamingRequestMediator)
    assert mediator_.max_concurrent_event_handlers == 10
    assert mediator_.event_delivery is mediator.EventDelivery.STRICT


async def test_bootstrap_streaming_defaults_run_ten_event_handlers_at_once() -> None:
    running = 0
    ten_running = asyncio.Event()
    release = asyncio.Event()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            self._events = [Happened(n=n) for n in range(12)]
            yield Item(n=0)

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            nonlocal running
            running += 1
            if running == 10:
                ten_running.set()
            await release.wait()
            running -= 1

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Produce, Handler)

    def domain_events(mapper: mediator.EventMap) -> None:
        mapper.bind(Happened, Slow)

    mediator_ = bootstrap.bootstrap_streaming(
        di_container=None, commands_mapper=commands, domain_events_mapper=domain_events
    )
    consumer = asyncio.create_task(collect(mediator_.stream(Produce())))
    await ten_running.wait()
    assert mediator_.event_handlers_running == 10
    release.set()
    assert len(await consumer) == 1
    assert mediator_.peak_event_handlers_running == 10


def test_one_mediator_serves_streams_in_successive_event_loops() -> None:
    # e.g. a functools.cache'd factory used by several asyncio.run() calls
    handled: list[int] = []

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events = [Happened(n=n), Happened(n=n)]
                yield Item(n=n)

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            handled.append(event.n)

    mediator_ = streaming(Handler, {Happened: [Slow]}, max_concurrent_event_handlers=1)

    first = asyncio.run(collect(mediator_.stream(Produce(count=2))))
    second = asyncio.run(collect(mediator_.stream(Produce(count=2))))

    assert first == second == [Item(n=0), Item(n=1)]
    assert handled == [0, 0, 1, 1, 0, 0, 1, 1]
