"""The mediator's observer hooks: what they are told, in which context, and that nobody pays without one."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import typing

import pytest

import mediator
from mediator import bootstrap
from mediator.observe import NULL_SCOPE, NullObserver, Outcome

STREAM_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("stream_tag", default="")


class Produce(mediator.Request):
    ids: list[str]


class Produced(mediator.Response):
    id: str


class Happened(mediator.DomainEvent, frozen=True):
    id: str


SEEN: list[tuple[str, str]] = []  # (event id, the stream tag the handler saw)


class ProduceHandler(mediator.StreamingRequestHandler[Produce, Produced]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: Produce) -> typing.AsyncIterator[Produced]:
        for id_ in request.ids:
            self._events.append(Happened(id=id_))
            yield Produced(id=id_)
        self._events.append(Happened(id="after-last"))


class HappenedHandler(mediator.EventHandler[Happened]):
    async def handle(self, event: Happened) -> None:
        await asyncio.sleep(0)  # a real suspension: the strict stream waits for it
        SEEN.append((event.id, STREAM_TAG.get()))
        if event.id.startswith("raise"):
            raise RuntimeError("broken")
        if event.id.startswith("hang"):
            await asyncio.Event().wait()


class Recorder(NullObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[typing.Any, ...]] = []

    def item_yielded(self, request_type: type[mediator.Request]) -> None:
        self.calls.append(("item", request_type.__name__))

    def events_emitted(self, events: typing.Sequence[mediator.Event]) -> None:
        self.calls.append(("emitted", [typing.cast(Happened, e).id for e in events]))

    def strict_waited(self, request_type: type[mediator.Request], seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("strict_wait", request_type.__name__))

    @contextlib.contextmanager
    def _scope(self, event: Happened, item: int | None) -> typing.Iterator[None]:
        self.calls.append(("scope", event.id, item, STREAM_TAG.get()))
        yield

    def event_handler_scope(
        self, event: mediator.Event, handler: str, item: int | None
    ) -> typing.ContextManager[object]:
        return self._scope(typing.cast(Happened, event), item)

    def event_handler_ended(
        self,
        event: mediator.Event,
        handler: str,
        outcome: Outcome,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        assert seconds >= 0
        assert (error is None) == (outcome in ("ok", "cancelled"))
        self.calls.append(("ended", typing.cast(Happened, event).id, handler, outcome))

    def of(self, kind: str) -> list[tuple[typing.Any, ...]]:
        return [call for call in self.calls if call[0] == kind]


def streaming(observer: Recorder | None, **options: typing.Any) -> mediator.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(
        commands_mapper=lambda m: m.bind(Produce, ProduceHandler),
        domain_events_mapper=lambda m: m.bind(Happened, HappenedHandler),
        observer=observer,
        **options,
    )


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    SEEN.clear()


async def test_without_an_observer_nothing_is_reported_and_streams_work() -> None:
    plain = streaming(None)
    assert plain.observer is None
    assert bootstrap.bootstrap().observer is None
    assert [item.id async for item in plain.stream(Produce(ids=["a", "b"]))] == ["a", "b"]
    assert [event_id for event_id, _ in SEEN] == ["a", "b", "after-last"]


async def test_a_strict_stream_reports_items_events_waits_and_runs_in_order() -> None:
    recorder = Recorder()
    items = [item.id async for item in streaming(recorder).stream(Produce(ids=["a", "b"]))]
    assert items == ["a", "b"]
    assert [call for call in recorder.calls if call[0] != "strict_wait"] == [
        ("emitted", ["a"]),
        ("scope", "a", 0, ""),
        ("ended", "a", "HappenedHandler", "ok"),
        ("item", "Produce"),
        ("emitted", ["b"]),
        ("scope", "b", 1, ""),
        ("ended", "b", "HappenedHandler", "ok"),
        ("item", "Produce"),
        ("emitted", ["after-last"]),
        ("scope", "after-last", None, ""),
        ("ended", "after-last", "HappenedHandler", "ok"),
    ]
    assert recorder.of("strict_wait") == [("strict_wait", "Produce")] * 2


async def test_outcomes_error_timeout_and_cancelled() -> None:
    recorder = Recorder()
    with pytest.raises(mediator.EventHandlerError):
        async for _ in streaming(recorder).stream(Produce(ids=["raise-1"])):
            pass
    with pytest.raises(mediator.EventHandlerTimeout):
        async for _ in streaming(recorder, event_handler_timeout=0.05).stream(Produce(ids=["hang-1"])):
            pass
    overlapped = streaming(recorder, event_delivery="overlapped", drain_timeout=0.05)
    async with contextlib.aclosing(overlapped.stream(Produce(ids=["hang-2", "never"]))) as stream:
        await anext(stream)  # hang-2's run is going; closing the stream drains it, then cancels it
    assert [call[1:] for call in recorder.of("ended")] == [
        ("raise-1", "HappenedHandler", "error"),
        ("hang-1", "HappenedHandler", "timeout"),
        ("hang-2", "HappenedHandler", "cancelled"),
    ]


async def test_every_run_takes_the_context_of_its_own_stream_even_when_queued() -> None:
    # One slot for two streams: runs queue, and a slot freed by one stream's run starts the other's.
    recorder = Recorder()
    shared = streaming(recorder, max_concurrent_event_handlers=1, event_delivery="overlapped")

    async def consume(tag: str) -> None:
        STREAM_TAG.set(tag)
        async for _ in shared.stream(Produce(ids=[f"{tag}{i}" for i in range(5)])):
            await asyncio.sleep(0)

    await asyncio.gather(consume("x"), consume("y"))
    assert len(SEEN) == 12
    assert all(tag == id_[0] for id_, tag in SEEN if id_ != "after-last"), SEEN
    scopes = recorder.of("scope")
    assert {(id_[0], tag) for _, id_, _, tag in scopes if id_ != "after-last"} == {("x", "x"), ("y", "y")}


async def test_a_request_mediator_reports_events_and_runs_without_an_item_index() -> None:
    class Ask(mediator.Request):
        id: str

    class AskHandler(mediator.RequestHandler[Ask, None]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, request: Ask) -> None:
            self._events.append(Happened(id=request.id))

    recorder = Recorder()
    unary = bootstrap.bootstrap(
        commands_mapper=lambda m: m.bind(Ask, AskHandler),
        domain_events_mapper=lambda m: m.bind(Happened, HappenedHandler),
        observer=recorder,
    )
    await unary.send(Ask(id="q"))
    assert recorder.calls == [
        ("emitted", ["q"]),
        ("scope", "q", None, ""),
        ("ended", "q", "HappenedHandler", "ok"),
    ]


def test_the_null_observer_scope_is_reusable() -> None:
    with NULL_SCOPE, NULL_SCOPE:
        pass
    assert NullObserver().event_handler_scope(Happened(id="a"), "h", 0) is NULL_SCOPE
