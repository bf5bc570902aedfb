"""A consumer that stops early: the handler is closed, events are drained, no task is left behind."""

import asyncio
import contextlib
import logging
import typing

import pytest

import mediator
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, streaming


def closing_handler(
    log: Log, closed: asyncio.Event | None = None, stuck: asyncio.Event | None = None
) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    """Yields items with one event each; logs its close; emits a last event from its ``finally``.

    With ``stuck``, producing item 1 waits for it.
    """

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            try:
                for n in range(request.count):
                    if n == 1 and stuck is not None:
                        await stuck.wait()
                    self._events.append(Happened(n=n))
                    yield Item(n=n)
            finally:
                log("handler finally")
                self._events.append(Happened(n=-1))
                if closed is not None:
                    closed.set()

    return Handler


def slow_event_handler(log: Log) -> type[mediator.EventHandler[Happened]]:
    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            log(f"event {event.n} handled")

    return Slow


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_aclose_closes_the_handler_and_drains_the_events_already_emitted(delivery: str) -> None:
    log = Log()
    before = asyncio.all_tasks()
    mediator_ = streaming(
        closing_handler(log), {Happened: [slow_event_handler(log)]}, event_delivery=delivery
    )

    stream = mediator_.stream(Produce(count=5))
    assert await anext(stream) == Item(n=0)
    await stream.aclose()
    log("aclose returned")

    assert log.entries[-1] == "aclose returned"
    assert "handler finally" in log
    assert "event 0 handled" in log  # emitted for a delivered item: never dropped
    assert "event -1 handled" in log  # emitted while the handler closed
    assert "event 1 handled" not in log  # item 1 was never produced
    assert asyncio.all_tasks() == before
    assert mediator_.event_handlers_running == 0


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_break_under_aclosing_closes_the_handler_before_the_block_exits(delivery: str) -> None:
    log = Log()
    before = asyncio.all_tasks()
    mediator_ = streaming(
        closing_handler(log), {Happened: [slow_event_handler(log)]}, event_delivery=delivery
    )

    async with contextlib.aclosing(mediator_.stream(Produce(count=5))) as stream:
        async for item in stream:
            log(f"consume {item.n}")
            if item.n == 1:
                break
    log("block exited")

    assert log.entries[-1] == "block exited"
    assert log.index("consume 1") < log.index("handler finally")
    assert {"event 0 handled", "event 1 handled", "event -1 handled"} <= set(log.entries)
    assert asyncio.all_tasks() == before


async def test_cancelling_a_consumer_parked_between_items_closes_the_stream_under_aclosing() -> None:
    log = Log()
    got_item = asyncio.Event()
    before = asyncio.all_tasks()
    mediator_ = streaming(
        closing_handler(log), {Happened: [slow_event_handler(log)]}, event_delivery="overlapped"
    )

    async def consume() -> None:
        try:
            async with contextlib.aclosing(mediator_.stream(Produce(count=5))) as stream:
                async for item in stream:
                    log(f"consume {item.n}")
                    got_item.set()
                    await asyncio.Event().wait()  # busy elsewhere until cancelled
        finally:
            log("consumer finished")

    consumer = asyncio.create_task(consume())
    await got_item.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert log.entries[0] == "consume 0"
    assert log.entries[-1] == "consumer finished"
    assert {"handler finally", "event 0 handled", "event -1 handled"} <= set(log.entries)
    assert asyncio.all_tasks() == before


async def test_cancelling_a_consumer_waiting_on_the_handler_drains_before_it_ends() -> None:
    log = Log()
    closed, stuck, release_event = asyncio.Event(), asyncio.Event(), asyncio.Event()
    event_started = asyncio.Event()
    before = asyncio.all_tasks()

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            event_started.set()
            await release_event.wait()
            log(f"event {event.n} handled")

    mediator_ = streaming(
        closing_handler(log, closed, stuck), {Happened: [Gated]}, event_delivery="overlapped"
    )

    async def consume() -> None:
        try:
            async for item in mediator_.stream(Produce(count=5)):
                log(f"consume {item.n}")
        finally:
            log("consumer finished")

    consumer = asyncio.create_task(consume())
    await event_started.wait()  # item 0 delivered, its event running, the handler stuck on item 1
    consumer.cancel()
    await closed.wait()  # the handler's finally ran
    assert not consumer.done()  # ... and the stream now waits for the event of the delivered item
    release_event.set()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert log.entries[0] == "consume 0"
    assert log.index("event 0 handled") < log.index("consumer finished")
    assert log.index("event -1 handled") < log.index("consumer finished")
    assert "consume 1" not in log
    assert asyncio.all_tasks() == before


async def test_cancelling_a_strict_consumer_while_events_run_still_handles_them() -> None:
    log = Log()
    event_started, release_event = asyncio.Event(), asyncio.Event()
    closed = asyncio.Event()
    before = asyncio.all_tasks()

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            event_started.set()
            await release_event.wait()
            log(f"event {event.n} handled")

    mediator_ = streaming(closing_handler(log, closed), {Happened: [Gated]})
    consumer = asyncio.create_task(anext(mediator_.stream(Produce(count=5))))
    await event_started.wait()  # strict: item 0 waits for its event
    consumer.cancel()
    await closed.wait()
    assert not consumer.done()
    release_event.set()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert log.entries[0] == "handler finally"
    assert sorted(log.entries[1:]) == ["event -1 handled", "event 0 handled"]
    assert asyncio.all_tasks() == before


async def test_an_event_handler_hanging_past_the_drain_timeout_is_cancelled_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    before = asyncio.all_tasks()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log(f"event {event.n} cancelled")
                raise

    mediator_ = streaming(
        closing_handler(log), {Happened: [Hangs]}, event_delivery="overlapped", drain_timeout=0.05
    )
    stream = mediator_.stream(Produce(count=5))
    assert await anext(stream) == Item(n=0)
    with caplog.at_level(logging.ERROR, logger="mediator"):
        await stream.aclose()

    assert log.entries == ["handler finally", "event 0 cancelled", "event -1 cancelled"]
    messages = [record.getMessage() for record in caplog.records if record.name == "mediator"]
    assert len(messages) == 2
    for message in messages:
        assert "Hangs" in message
        assert "Happened" in message
        assert "drain timeout" in message
    assert mediator_.events_abandoned == 2
    assert asyncio.all_tasks() == before
    assert mediator_.event_handlers_running == 0


async def test_runs_queued_at_the_drain_start_when_a_slot_frees_and_get_their_own_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The drain bounds running work, not waiting: event -1 (emitted by the handler's finally) waits
    # for event 0's slot; when event 0 is cut off at the drain timeout, -1 starts and gets the same
    # bound from its own start. Both are logged, one line each, and counted.
    log = Log()
    before = asyncio.all_tasks()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n} started")
            await asyncio.Event().wait()

    mediator_ = streaming(
        closing_handler(log),
        {Happened: [Hangs]},
        event_delivery="overlapped",
        drain_timeout=0.05,
        max_concurrent_event_handlers=1,
    )
    stream = mediator_.stream(Produce(count=5))
    await anext(stream)
    with caplog.at_level(logging.ERROR, logger="mediator"):
        await stream.aclose()

    assert sorted(log.entries) == ["event -1 started", "event 0 started", "handler finally"]
    messages = [record.getMessage() for record in caplog.records if record.name == "mediator"]
    cancelled = [message for message in messages if "was cancelled" in message]
    assert len(cancelled) == 2, messages
    assert all("drain timeout (0.05 s)" in message for message in cancelled)
    assert mediator_.events_abandoned == 2
    assert asyncio.all_tasks() == before
    assert mediator_.event_handlers_running == 0
    assert mediator_.draining == 0


async def test_cancelling_the_consumer_again_during_the_drain_cancels_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    closed, stuck, event_started = asyncio.Event(), asyncio.Event(), asyncio.Event()
    before = asyncio.all_tasks()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            event_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                log(f"event {event.n} cancelled")
                raise

    mediator_ = streaming(
        closing_handler(log, closed, stuck),
        {Happened: [Hangs]},
        event_delivery="overlapped",
        drain_timeout=60,
    )
    consumer = asyncio.create_task(collect(mediator_.stream(Produce(count=5))))
    await event_started.wait()  # item 0 delivered, its event hanging, the handler stuck on item 1
    consumer.cancel()
    await closed.wait()
    assert not consumer.done()  # draining: up to 60 s for the hanging event handler
    with caplog.at_level(logging.ERROR, logger="mediator"):
        consumer.cancel()  # impatient: stop draining now
        with pytest.raises(asyncio.CancelledError):
            await consumer

    assert "event 0 cancelled" in log
    messages = [record.getMessage() for record in caplog.records if record.name == "mediator"]
    assert any("was cancelled: the stream's drain was interrupted" in message for message in messages)
    assert mediator_.events_abandoned == 2  # event 0, and event -1 the handler's finally emitted
    assert asyncio.all_tasks() == before
    assert mediator_.event_handlers_running == 0
