"""``max_concurrent_event_handlers`` and ``concurrent_event_handle_enable``."""

import asyncio
import typing

import pytest

import mediator
from tests.mediator.fakes import Happened, Item, Log, Produce, Running, collect, streaming


def emitting_per_item(events_per_item: int) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                self._events = [Happened(n=n * 100 + i, tag=request.tag) for i in range(events_per_item)]
                yield Item(n=n, tag=request.tag)

    return Handler


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_never_more_than_k_event_handlers_run_and_k_are_reached(delivery: str) -> None:
    k = 3
    running = Running()
    started: asyncio.Queue[int] = asyncio.Queue()
    release = asyncio.Event()

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            running.enter()
            started.put_nowait(event.n)
            try:
                await release.wait()
            finally:
                running.leave()

    mediator_ = streaming(
        emitting_per_item(7), {Happened: [Gated]}, max_concurrent_event_handlers=k, event_delivery=delivery
    )
    consumer = asyncio.create_task(collect(mediator_.stream(Produce(count=2))))

    first = [await started.get() for _ in range(k)]
    assert first == [0, 1, 2]  # first come, first served
    assert running.now == k
    assert mediator_.event_handlers_running == k
    release.set()

    assert len(await consumer) == 2
    assert running.peak == k
    assert mediator_.peak_event_handlers_running == k
    assert mediator_.event_handlers_running == 0
    assert started.qsize() == 14 - k


async def test_the_bound_holds_for_the_whole_mediator_across_concurrent_streams() -> None:
    running = Running()
    started: asyncio.Queue[str] = asyncio.Queue()
    release = asyncio.Event()

    class Gated(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            running.enter()
            started.put_nowait(event.tag)
            try:
                await release.wait()
            finally:
                running.leave()

    mediator_ = streaming(
        emitting_per_item(3),
        {Happened: [Gated]},
        max_concurrent_event_handlers=2,
        event_delivery="overlapped",
    )
    consumers = [
        asyncio.create_task(collect(mediator_.stream(Produce(count=2, tag=tag)))) for tag in ("a", "b", "c")
    ]
    await started.get()
    await started.get()
    assert running.now == 2
    release.set()

    results = await asyncio.gather(*consumers)

    assert [len(items) for items in results] == [2, 2, 2]
    assert started.qsize() == 3 * 2 * 3 - 2
    assert running.peak == 2
    assert mediator_.peak_event_handlers_running == 2


async def test_with_concurrency_disabled_event_handlers_run_one_at_a_time_in_emission_order() -> None:
    log = Log()
    running = Running()

    class First(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            running.enter()
            log(f"first {event.n} start")
            await asyncio.sleep(0)  # real work would suspend here
            log(f"first {event.n} end")
            running.leave()

    class Second(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            running.enter()
            log(f"second {event.n} start")
            await asyncio.sleep(0)
            log(f"second {event.n} end")
            running.leave()

    mediator_ = streaming(
        emitting_per_item(3),
        {Happened: [First, Second]},
        max_concurrent_event_handlers=10,
        concurrent_event_handle_enable=False,
    )
    await collect(mediator_.stream(Produce(count=1)))

    assert mediator_.max_concurrent_event_handlers_per_stream == 1  # one at a time in a stream
    assert mediator_.max_concurrent_event_handlers == 10  # the ceiling for all streams is kept
    assert log.entries == [
        f"{name} {n} {step}" for n in range(3) for name in ("first", "second") for step in ("start", "end")
    ]
    assert running.peak == 1
    assert mediator_.peak_event_handlers_running == 1


async def test_with_concurrency_enabled_event_handlers_of_one_item_overlap() -> None:
    # The counterpart of the test above: the same handlers do overlap when allowed to.
    running = Running()

    class Yielding(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            running.enter()
            await asyncio.sleep(0)
            running.leave()

    mediator_ = streaming(emitting_per_item(4), {Happened: [Yielding]}, max_concurrent_event_handlers=10)
    await collect(mediator_.stream(Produce(count=1)))

    assert running.peak == 4
    assert mediator_.peak_event_handlers_running == 4


@pytest.mark.parametrize("limit", [0, -1])
def test_a_bound_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        streaming(emitting_per_item(1), max_concurrent_event_handlers=limit)
