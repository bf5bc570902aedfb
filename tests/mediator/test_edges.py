"""The mediators at their edges: built by hand, given a container, wrapped by behaviours, misused.

Each test here was added for a mutant of ``mediator/_mediators.py`` that the other tests let
survive (docs/testing.md, "Surviving mutants").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing

import pytest

import mediator
from mediator import bootstrap
from mediator.behaviours import NextRequest, NextStream
from mediator.observe import NullObserver, Outcome
from tests.mediator.fakes import Happened, Item, Produce, streaming


class Ask(mediator.Request):
    n: int = 0


class Answer(mediator.Response):
    n: int


class Emits(mediator.StreamingRequestHandler[Produce, Item]):
    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for n in range(request.count):
            self._events = [Happened(n=n)]
            yield Item(n=n)


class AnswersWithAnEvent(mediator.RequestHandler[Ask, Answer]):
    async def handle(self, request: Ask) -> Answer:
        self._events = [Happened(n=request.n)]
        return Answer(n=request.n)


async def test_mediators_built_without_an_event_map_take_the_events_their_handlers_emit() -> None:
    # The constructors' own defaults (bootstrap always passes a map): no handler, no broker.
    requests = mediator.RequestMap()
    requests.bind(Ask, AnswersWithAnEvent)
    requests.bind(Produce, Emits)
    assert await mediator.RequestMediator(requests).send(Ask(n=4)) == Answer(n=4)
    streamed = [item.n async for item in mediator.StreamingRequestMediator(requests).stream(Produce())]
    assert streamed == [0, 1, 2]


async def test_the_request_mediator_builds_its_handlers_with_the_container() -> None:
    class Needs(mediator.RequestHandler[Ask, Answer]):
        def __init__(self, offset: int) -> None:
            self.offset = offset

        async def handle(self, request: Ask) -> Answer:
            return Answer(n=request.n + self.offset)

    class Container:
        async def resolve(self, type_: type[typing.Any]) -> typing.Any:
            await asyncio.sleep(0)
            return type_(offset=100) if type_ is Needs else type_()

    unary = bootstrap.bootstrap(di_container=Container(), commands_mapper=lambda m: m.bind(Ask, Needs))
    assert await unary.send(Ask(n=1)) == Answer(n=101)


def test_a_mediator_exposes_the_event_processing_it_was_built_with() -> None:
    streams = bootstrap.bootstrap_streaming(drain_timeout=7, max_concurrent_event_handlers=3)
    assert streams.event_processing.drain_timeout == 7
    assert streams.event_processing.max_concurrent_event_handlers == 3


async def test_sending_to_the_wrong_mediator_names_the_request_the_handler_and_the_right_call() -> None:
    requests = mediator.RequestMap()
    requests.bind(Ask, AnswersWithAnEvent)
    requests.bind(Produce, Emits)
    with pytest.raises(TypeError) as sent:
        await mediator.RequestMediator(requests).send(Produce())
    assert str(sent.value).startswith("Produce is bound to the streaming handler Emits")
    with pytest.raises(TypeError) as streamed:
        mediator.StreamingRequestMediator(requests).stream(Ask())
    assert str(streamed.value) == (
        "Ask is bound to AnswersWithAnEvent, which is not a StreamingRequestHandler: "
        "use RequestMediator.send()"
    )


async def test_behaviours_are_given_the_request_they_wrap() -> None:
    seen: list[object] = []

    async def around_stream(request: mediator.Request, call_next: NextStream) -> typing.AsyncIterator[Item]:
        seen.append(request)
        async for item in call_next():
            yield item

    async def around_request(request: mediator.Request, call_next: NextRequest) -> typing.Any:
        seen.append(request)
        return await call_next()

    streams = streaming(Emits, behaviours=[around_stream])
    assert [item.n async for item in streams.stream(Produce(count=1, tag="s"))] == [0]
    unary = bootstrap.bootstrap(
        commands_mapper=lambda m: m.bind(Ask, AnswersWithAnEvent), behaviours=[around_request]
    )
    await unary.send(Ask(n=2))
    assert seen == [Produce(count=1, tag="s"), Ask(n=2)]


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
@pytest.mark.parametrize("suspends", [False, True], ids=["fails at once", "fails after suspending"])
async def test_an_event_emitted_after_the_last_item_that_fails_ends_the_stream_with_its_error(
    delivery: str, suspends: bool
) -> None:
    class EmitsAtTheEnd(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            yield Item(n=0)
            self._events = [Happened(n=1)]  # after the last item: handled before the stream ends

    class Refuses(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if suspends:
                await asyncio.sleep(0)
            raise ValueError("refused")

    delivered: list[int] = []
    with pytest.raises(
        mediator.EventHandlerError, match="Refuses failed handling Happened: ValueError: refused"
    ):
        async for item in streaming(EmitsAtTheEnd, {Happened: [Refuses]}, event_delivery=delivery).stream(
            Produce()
        ):
            delivered.append(item.n)
    assert delivered == [0]


async def test_a_stream_behaviour_that_returns_a_plain_async_iterator_can_be_stopped_early() -> None:
    # A behaviour need not be an async generator: what it returns may have no aclose().
    closed: list[str] = []

    class Counting(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            try:
                for n in range(request.count):
                    await asyncio.sleep(0)
                    yield Item(n=n)
            finally:
                closed.append("handler")

    class Passing:
        def __init__(self, inner: typing.AsyncIterator[Item]) -> None:
            self.inner = inner

        def __aiter__(self) -> Passing:
            return self

        async def __anext__(self) -> Item:
            return await anext(self.inner)

    def plain(request: mediator.Request, call_next: NextStream) -> typing.AsyncIterator[Item]:
        return Passing(call_next())

    stream = streaming(Counting, behaviours=[plain]).stream(Produce(count=5))
    assert (await anext(stream)).n == 0
    await stream.aclose()  # closes the handler's own generator, though the behaviour cannot be closed
    assert closed == ["handler"]


class Recorder(NullObserver):
    """Records the scope of every run (item index, handler) and every duration reported."""

    def __init__(self) -> None:
        self.scopes: list[tuple[int, str, int | None]] = []
        self.durations: list[float] = []

    def strict_waited(self, request_type: type[mediator.Request], seconds: float) -> None:
        self.durations.append(seconds)

    @contextlib.contextmanager
    def _scope(self) -> typing.Iterator[None]:
        yield

    def event_handler_scope(
        self, event: mediator.Event, handler: str, item: int | None
    ) -> typing.ContextManager[object]:
        self.scopes.append((typing.cast(Happened | Cascaded, event).n, handler, item))
        return self._scope()

    def event_handler_ended(
        self,
        event: mediator.Event,
        handler: str,
        outcome: Outcome,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        self.durations.append(seconds)


class Cascaded(mediator.DomainEvent, frozen=True):
    n: int


class Records(mediator.EventHandler[Happened]):
    async def handle(self, event: Happened) -> None:
        await asyncio.sleep(0)
        self._events = [Cascaded(n=event.n)]


class RecordsCascade(mediator.EventHandler[Cascaded]):
    async def handle(self, event: Cascaded) -> None:
        await asyncio.sleep(0)


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_every_run_is_scoped_with_its_handler_and_the_index_of_the_item_it_came_from(
    delivery: str,
) -> None:
    recorder = Recorder()
    streams = streaming(
        Emits, {Happened: [Records], Cascaded: [RecordsCascade]}, event_delivery=delivery, observer=recorder
    )
    assert [item.n async for item in streams.stream(Produce(count=3))] == [0, 1, 2]
    # A cascade's run is scoped with the item of the event that led to it.
    assert sorted(recorder.scopes) == sorted(
        [(n, "Records", n) for n in range(3)] + [(n, "RecordsCascade", n) for n in range(3)]
    )


async def test_the_durations_reported_lie_within_the_streams_own_span() -> None:
    # No duration is asserted; each must only fit inside the time the test saw the stream take.
    recorder = Recorder()
    streams = streaming(Emits, {Happened: [Records], Cascaded: [RecordsCascade]}, observer=recorder)
    started = time.perf_counter()
    assert [item.n async for item in streams.stream(Produce(count=3))] == [0, 1, 2]
    span = time.perf_counter() - started
    assert len(recorder.durations) == 9  # three strict waits, six runs
    assert all(0 <= seconds <= span for seconds in recorder.durations), (recorder.durations, span)
