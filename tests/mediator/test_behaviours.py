"""Behaviours around streams, requests and event-handler runs (``mediator.behaviours``)."""

from __future__ import annotations

import asyncio
import typing

import pytest

import mediator
from mediator import bootstrap
from mediator.behaviours import NextEventRun, NextRequest, NextStream, RetryWithBackoff
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, other_tasks, streaming


def producing(log: Log, fail_at: int | None = None) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            try:
                for n in range(request.count):
                    await asyncio.sleep(0)
                    if n == fail_at:
                        raise RuntimeError(f"failed at {n}")
                    self._events = [Happened(n=n)]
                    yield Item(n=n)
            finally:
                log("handler finally")

    return Handler


def recording_events(log: Log) -> type[mediator.EventHandler[Happened]]:
    class Recorder(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            log(f"event {event.n}")

    return Recorder


class Tagging:
    """A stream behaviour that logs what it sees and tags every item with its name."""

    def __init__(self, name: str, log: Log) -> None:
        self.name, self.log = name, log

    async def __call__(self, request: mediator.Request, call_next: NextStream) -> typing.AsyncIterator[Item]:
        self.log(f"{self.name} start")
        try:
            async for item in call_next():
                yield Item(n=item.n, tag=item.tag + self.name)
        except GeneratorExit:
            self.log(f"{self.name} cancelled")
            raise
        except Exception as error:
            self.log(f"{self.name} saw {error}")
            raise
        else:
            self.log(f"{self.name} end")


async def test_stream_behaviours_run_in_the_order_given_the_first_outermost() -> None:
    log = Log()
    mediator_ = streaming(
        producing(log),
        {Happened: [recording_events(log)]},
        behaviours=[Tagging("a", log), Tagging("b", log)],
    )
    items = await collect(mediator_.stream(Produce(count=2)))
    assert [item.tag for item in items] == ["ba", "ba"]  # b (inner) tagged first, then a
    assert log.entries[:2] == ["a start", "b start"]
    assert log.index("handler finally") < log.index("b end") < log.index("a end")
    assert log.index("event 0") < log.index("event 1")  # events still handled, per item


async def test_a_behaviour_sees_the_handlers_error_and_the_consumer_going_away() -> None:
    log = Log()
    mediator_ = streaming(producing(log, fail_at=1), behaviours=[Tagging("a", log)])
    with pytest.raises(RuntimeError, match="failed at 1"):
        await collect(mediator_.stream(Produce(count=3)))
    assert "a saw failed at 1" in log

    log = Log()
    before = other_tasks()
    mediator_ = streaming(producing(log), {Happened: [recording_events(log)]}, behaviours=[Tagging("a", log)])
    stream = mediator_.stream(Produce(count=5))
    assert (await anext(stream)).n == 0
    await stream.aclose()
    assert "a cancelled" in log
    assert "handler finally" in log  # the mediator closed the handler's own stream too
    assert "event 0" in log  # the delivered item's event was handled
    assert other_tasks() == before


async def test_a_behaviour_that_stops_the_stream_closes_the_handler_and_keeps_the_events() -> None:
    log = Log()

    async def first_two(request: mediator.Request, call_next: NextStream) -> typing.AsyncIterator[Item]:
        count = 0
        async for item in call_next():
            yield item
            count += 1
            if count == 2:
                return  # stop: no third item is asked for

    mediator_ = streaming(producing(log), {Happened: [recording_events(log)]}, behaviours=[first_two])
    items = await collect(mediator_.stream(Produce(count=10)))
    assert [item.n for item in items] == [0, 1]
    assert "handler finally" in log
    assert [entry for entry in log.entries if entry.startswith("event")] == ["event 0", "event 1"]


async def test_a_behaviour_may_retry_before_the_first_item() -> None:
    log = Log()
    attempts = 0

    class FlakyStart(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0)
            if attempts == 1:
                raise ConnectionError("not yet")
            yield Item(n=attempts)

    async def retry_once(request: mediator.Request, call_next: NextStream) -> typing.AsyncIterator[Item]:
        try:
            first = await anext(aiter(call_next()))
        except ConnectionError:
            log("retrying")
            first = await anext(aiter(call_next()))
        yield first

    mediator_ = streaming(FlakyStart, behaviours=[retry_once])
    assert [item.n for item in await collect(mediator_.stream(Produce()))] == [2]
    assert log.entries == ["retrying"]


async def test_request_behaviours_wrap_send_in_order() -> None:
    log = Log()

    class Ask(mediator.Request):
        n: int

    class Answer(mediator.Response):
        n: int

    class AskHandler(mediator.RequestHandler[Ask, Answer]):
        async def handle(self, request: Ask) -> Answer:
            log("handle")
            return Answer(n=request.n)

    def named(name: str) -> typing.Any:
        async def behaviour(request: mediator.Request, call_next: NextRequest) -> typing.Any:
            log(f"{name} before")
            response = await call_next()
            log(f"{name} after")
            return Answer(n=response.n + 1)

        return behaviour

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Ask, AskHandler)

    mediator_ = bootstrap.bootstrap(commands_mapper=commands, behaviours=[named("a"), named("b")])
    assert await mediator_.send(Ask(n=1)) == Answer(n=3)
    assert log.entries == ["a before", "b before", "handle", "b after", "a after"]


async def test_retry_with_backoff_runs_a_failing_event_handler_again_until_it_succeeds() -> None:
    log = Log()
    failures_left = {0: 2}

    class Flaky(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            if failures_left.get(event.n, 0):
                failures_left[event.n] -= 1
                raise ConnectionError("database busy")
            log(f"event {event.n}")

    mediator_ = streaming(
        producing(log),
        {Happened: [Flaky]},
        event_handler_behaviours=[RetryWithBackoff(attempts=3, backoff=0.001, max_backoff=0.002)],
    )
    assert [item.n for item in await collect(mediator_.stream(Produce(count=2)))] == [0, 1]
    assert [entry for entry in log.entries if entry.startswith("event")] == ["event 0", "event 1"]


async def test_retry_with_backoff_gives_up_after_its_attempts_and_the_stream_fails() -> None:
    runs = 0

    class AlwaysFails(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            nonlocal runs
            runs += 1
            raise ConnectionError("down")

    mediator_ = streaming(
        producing(Log()),
        {Happened: [AlwaysFails]},
        event_handler_behaviours=[RetryWithBackoff(attempts=3, backoff=0.001, max_backoff=0.002)],
    )
    with pytest.raises(mediator.EventHandlerError, match="ConnectionError: down"):
        await collect(mediator_.stream(Produce(count=2)))
    assert runs == 3


async def test_event_handler_behaviours_see_every_run_including_the_brokers() -> None:
    seen: list[str] = []

    class Notice(mediator.NotificationEvent[dict[str, int]], frozen=True):
        topic: str = "t"

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            self._events = [Happened(n=0), Notice(payload={"n": 0})]
            yield Item(n=0)

    async def watching(event: mediator.Event, handler: str, call_next: NextEventRun) -> typing.Any:
        seen.append(f"{handler} {type(event).__name__}")
        return await call_next()

    mediator_ = streaming(Handler, {Happened: [recording_events(Log())]}, event_handler_behaviours=[watching])
    await collect(mediator_.stream(Produce()))
    assert sorted(seen) == ["DevnullMessageBroker Notice", "recording_events.<locals>.Recorder Happened"]


def test_retry_with_backoff_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryWithBackoff(attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryWithBackoff(backoff=2, max_backoff=1)
