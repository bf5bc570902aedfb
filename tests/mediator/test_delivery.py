"""Delivery order: ``strict`` (events of item n before item n) and ``overlapped``."""

import asyncio
import time
import typing

import pytest

import mediator
from tests.mediator.fakes import Happened, Item, Log, Produce, collect, streaming


def logging_handler(log: Log) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                log(f"produce {n}")
                self._events = [Happened(n=n, tag="a"), Happened(n=n, tag="b")]
                yield Item(n=n)

    return Handler


def test_strict_is_the_default_and_modes_are_checked() -> None:
    handler = logging_handler(Log())
    assert streaming(handler).event_delivery is mediator.EventDelivery.STRICT
    assert streaming(handler, event_delivery="overlapped").event_delivery is mediator.EventDelivery.OVERLAPPED
    with pytest.raises(ValueError, match="sideways"):
        streaming(handler, event_delivery="sideways")


async def test_strict_handles_every_event_of_item_n_before_item_n_reaches_the_consumer() -> None:
    log = Log()

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n}{event.tag} start")
            for _ in range(3):
                await asyncio.sleep(0)
            log(f"event {event.n}{event.tag} end")

    await collect(streaming(logging_handler(log), {Happened: [Slow]}).stream(Produce(count=2)), log)

    assert log.entries == [
        "produce 0",
        "event 0a start",
        "event 0b start",
        "event 0a end",
        "event 0b end",
        "consume 0",
        "produce 1",
        "event 1a start",
        "event 1b start",
        "event 1a end",
        "event 1b end",
        "consume 1",
    ]


async def test_overlapped_delivers_item_n_while_its_events_are_still_running() -> None:
    log = Log()
    consumed = [asyncio.Event() for _ in range(3)]

    class WaitsForConsumer(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n}{event.tag} start")
            await consumed[event.n].wait()  # a strict mediator would never get past this
            log(f"event {event.n}{event.tag} end")

    mediator_ = streaming(logging_handler(log), {Happened: [WaitsForConsumer]}, event_delivery="overlapped")
    async with asyncio.timeout(5):  # a safety net against a hang, not a timing assertion
        async for item in mediator_.stream(Produce(count=3)):
            log(f"consume {item.n}")
            consumed[item.n].set()
    log("stream ended")

    for n in range(3):
        assert log.index(f"consume {n}") < log.index(f"event {n}a end")
        assert log.index(f"consume {n}") < log.index(f"event {n}b end")
    assert log.entries[-1] == "stream ended"  # only once every event was handled
    assert len(log.entries) == 3 + 3 + 3 * 2 * 2 + 1  # produce, consume, event start/end, ended
    assert mediator_.event_handlers_running == 0


async def test_overlapped_produces_item_n_plus_1_while_events_of_item_n_run() -> None:
    # Each side waits for the other: event handling of item n cannot finish until the handler has
    # started producing item n + 1, which only an overlapping mediator allows.
    log = Log()
    producing = [asyncio.Event() for _ in range(4)]

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                log(f"produce {n} start")
                producing[n].set()
                await asyncio.sleep(0)
                log(f"produce {n} end")
                self._events = [Happened(n=n)]
                yield Item(n=n)

    class WaitsForNextItem(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"event {event.n} start")
            await producing[event.n + 1].wait()
            log(f"event {event.n} end")

    producing[3].set()  # nothing comes after the last item
    mediator_ = streaming(Handler, {Happened: [WaitsForNextItem]}, event_delivery="overlapped")
    async with asyncio.timeout(5):  # a safety net against a hang, not a timing assertion
        await collect(mediator_.stream(Produce(count=3)), log)

    for n in range(2):
        assert log.index(f"event {n} start") < log.index(f"produce {n + 1} end")
        assert log.index(f"produce {n + 1} start") < log.index(f"event {n} end")
    # The last event may end before or after its item is consumed (on Python 3.12 an event handler
    # that does not suspend runs to its end when submitted); the stream did not end before it.
    assert "event 2 end" in log.entries


async def test_overlapped_wall_time_follows_the_slower_side_not_the_sum() -> None:
    # Slow event handlers, slow production: the recorded intervals of event work for item n and
    # production of item n + 1 overlap. Only the order of recorded timestamps is asserted.
    spans: dict[str, list[float]] = {}

    def span(name: str, edge: int) -> None:
        spans.setdefault(name, [0.0, 0.0])[edge] = time.perf_counter()

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                span(f"produce {n}", 0)
                await asyncio.sleep(0.01)
                span(f"produce {n}", 1)
                self._events = [Happened(n=n)]
                yield Item(n=n)

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            span(f"event {event.n}", 0)
            await asyncio.sleep(0.02)
            span(f"event {event.n}", 1)

    started = time.perf_counter()
    await collect(
        streaming(Handler, {Happened: [Slow]}, event_delivery="overlapped").stream(Produce(count=3))
    )
    ended = time.perf_counter()

    for n in range(2):
        event, next_item = spans[f"event {n}"], spans[f"produce {n + 1}"]
        assert event[0] < next_item[1]
        assert next_item[0] < event[1]
    assert started <= spans["produce 0"][0]
    assert spans["event 2"][1] <= ended  # the stream ended only after the last event was handled


async def test_overlapped_does_not_run_ahead_while_its_events_wait_for_a_slot() -> None:
    log = Log()
    release = asyncio.Event()
    started: asyncio.Queue[int] = asyncio.Queue()

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            started.put_nowait(event.n)
            await release.wait()
            log(f"event {event.n}{event.tag} end")

    mediator_ = streaming(
        logging_handler(log),
        {Happened: [Gated]},
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
    )
    stream = mediator_.stream(Produce(count=2))
    assert await anext(stream) == Item(n=0)  # delivered at once although its events cannot all run
    next_item = asyncio.create_task(anext(stream))
    await started.get()
    assert log.entries == ["produce 0"]  # item 1 is not asked for: 0b still waits for the slot
    release.set()

    assert await next_item == Item(n=1)
    assert await collect(stream) == []
    assert log.entries[:3] == ["produce 0", "event 0a end", "event 0b end"]
    assert log.index("event 0b end") < log.index("produce 1")


async def test_overlapped_resumes_as_soon_as_its_queued_events_get_a_slot_from_another_stream() -> None:
    # One slot. Stream "a" holds it; stream "b" delivers item 0 while its event queues. Once "a"
    # frees the slot and b's event starts, "b" must go on producing item 1 while that event runs.
    log = Log()
    release_a = asyncio.Event()
    produced = {tag: [asyncio.Event() for _ in range(2)] for tag in "ab"}

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                log(f"{request.tag} produce {n}")
                produced[request.tag][n].set()
                self._events = [Happened(n=n, tag=request.tag)] if n == 0 else []
                yield Item(n=n, tag=request.tag)

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            log(f"{event.tag} event start")
            if event.tag == "a":
                await release_a.wait()
            else:
                await produced["b"][1].wait()  # needs b's handler to go on meanwhile
            log(f"{event.tag} event end")

    mediator_ = streaming(
        Handler, {Happened: [Gated]}, event_delivery="overlapped", max_concurrent_event_handlers=1
    )
    async with asyncio.timeout(5):  # a safety net against a hang, not a timing assertion
        a = mediator_.stream(Produce(count=2, tag="a"))
        b = mediator_.stream(Produce(count=2, tag="b"))
        assert await anext(a) == Item(n=0, tag="a")
        assert await anext(b) == Item(n=0, tag="b")  # its event waits for a's slot
        rest_of_b = asyncio.create_task(collect(b))
        release_a.set()
        assert await collect(a) == [Item(n=1, tag="a")]
        assert await rest_of_b == [Item(n=1, tag="b")]

    # b's event had its slot (and its task) before b produced item 1, and could only end after it.
    assert log.index("a event end") < log.index("b produce 1") < log.index("b event end")
    assert log.index("b event start") < log.index("b event end")
