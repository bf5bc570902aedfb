"""The delivery promises when the mediator's bound is saturated, and fairness between streams.

Strict delivery: an item reaches the consumer only after every run of its events has *finished*,
also when those runs had to wait for a slot held by another stream. Fairness: one stream's slow or
hanging event handlers never hold every slot (``max_concurrent_event_handlers_per_stream``), and
queued runs get free slots stream by stream (round robin), not in one global queue.
"""

import asyncio
import typing

import pytest

import mediator
from tests.mediator.fakes import Happened, Item, Produce, collect, streaming


class Slow(mediator.DomainEvent, frozen=True):
    tag: str


def per_item_events(
    record: list[str], slow_events: int = 1
) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    """Yields ``count`` items tagged ``tag``, each with one ``Happened``; for the tag "slow" an item
    -1 with ``slow_events`` ``Slow`` events comes first."""

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            if request.tag == "slow":
                self._events: list[mediator.DomainEvent] = [
                    Slow(tag=f"{request.tag}{i}") for i in range(slow_events)
                ]
                yield Item(n=-1, tag=request.tag)
            for n in range(request.count):
                record.append(f"produce {request.tag}-{n}")
                self._events = [Happened(n=n, tag=request.tag)]
                yield Item(n=n, tag=request.tag)

    return Handler


async def test_strict_waits_for_events_queued_behind_another_streams_slot() -> None:
    # The reported case: one slot, stream A's event handler holds it; stream B's items must not be
    # delivered before their own events (queued for that slot) have been handled.
    handled: set[tuple[str, int]] = set()
    slow_holds_slot = asyncio.Event()
    release_slow = asyncio.Event()
    record: list[str] = []

    class SlowHandler(mediator.EventHandler[Slow]):
        async def handle(self, event: Slow) -> None:
            slow_holds_slot.set()
            await release_slow.wait()

    class Records(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)  # really suspends
            handled.add((event.tag, event.n))

    mediator_ = streaming(
        per_item_events(record),
        {Slow: [SlowHandler], Happened: [Records]},
        max_concurrent_event_handlers=1,
        max_concurrent_event_handlers_per_stream=1,
        event_delivery="strict",
    )
    a = mediator_.stream(Produce(count=0, tag="slow"))
    a_first = asyncio.create_task(anext(a))
    await slow_holds_slot.wait()
    b = mediator_.stream(Produce(count=2, tag="fast"))
    b_items: list[Item] = []

    async def consume_b() -> None:
        async for item in b:
            # Per item: its event was handled before the consumer got it.
            assert ("fast", item.n) in handled, f"item {item.n} delivered before its event ran"
            b_items.append(item)

    consumer = asyncio.create_task(consume_b())
    await asyncio.sleep(0.05)  # give a wrong implementation every chance to deliver early
    assert b_items == []  # nothing delivered while its event waits for the slot
    release_slow.set()
    async with asyncio.timeout(10):  # a safety net against a hang, not a timing assertion
        await consumer
        assert (await a_first).n == -1
        assert await collect(a) == []
    assert [item.n for item in b_items] == [0, 1]


async def test_strict_holds_per_item_for_many_streams_on_a_saturated_bound() -> None:
    handled: set[tuple[str, int]] = set()
    running = 0
    peak = 0
    record: list[str] = []

    class Records(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                for _ in range(3):
                    await asyncio.sleep(0)
                handled.add((event.tag, event.n))
            finally:
                running -= 1

    limit = 4
    mediator_ = streaming(per_item_events(record), {Happened: [Records]}, max_concurrent_event_handlers=limit)
    violations: list[tuple[str, int]] = []

    async def consume(tag: str) -> int:
        count = 0
        async for item in mediator_.stream(Produce(count=20, tag=tag)):
            if (tag, item.n) not in handled:
                violations.append((tag, item.n))
            count += 1
        return count

    async with asyncio.timeout(30):
        counts = await asyncio.gather(*(consume(f"s{i}") for i in range(50)))
    assert counts == [20] * 50
    assert violations == []
    assert peak == limit  # the bound was reached: runs did queue for slots
    assert mediator_.peak_event_handlers_running == limit


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_one_stream_with_hanging_handlers_cannot_starve_the_others(delivery: str) -> None:
    # The reported case: ten hanging runs in one stream, service ceiling 10. Other streams still get
    # slots and finish, while the bad stream holds only its share.
    hung = 0
    share = 5
    share_taken = asyncio.Event()
    record: list[str] = []

    class Hangs(mediator.EventHandler[Slow]):
        async def handle(self, event: Slow) -> None:
            nonlocal hung
            hung += 1
            if hung == share:
                share_taken.set()
            await asyncio.Event().wait()  # hangs until cancelled

    class Quick(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)

    mediator_ = streaming(
        per_item_events(record, slow_events=10),
        {Slow: [Hangs], Happened: [Quick]},
        max_concurrent_event_handlers=10,
        max_concurrent_event_handlers_per_stream=share,
        event_delivery=delivery,
        drain_timeout=0.1,
    )
    assert mediator_.max_concurrent_event_handlers_per_stream == share
    bad = mediator_.stream(Produce(count=1, tag="slow"))
    bad_first = asyncio.create_task(anext(bad))
    await share_taken.wait()
    async with asyncio.timeout(10):  # a safety net against a hang, not a timing assertion
        others = await asyncio.gather(
            *(collect(mediator_.stream(Produce(count=5, tag=f"g{i}"))) for i in range(8))
        )
    assert [len(items) for items in others] == [5] * 8
    assert hung == share  # the other five of its ten runs still wait for its own share
    assert mediator_.event_handlers_running == share
    bad_first.cancel()
    await asyncio.gather(bad_first, return_exceptions=True)
    await bad.aclose()
    assert mediator_.event_handlers_running == 0


def test_the_per_stream_share_is_keyword_only_so_the_specs_positional_calls_keep_their_meaning() -> None:
    # The spec's order: container, commands, events, broker, max_concurrent_event_handlers, enable.
    mediator_ = mediator.bootstrap.bootstrap_streaming(None, lambda mapper: None, None, None, 3, False)
    assert mediator_.max_concurrent_event_handlers == 3
    assert mediator_.max_concurrent_event_handlers_per_stream == 1  # sequential in a stream
    shared = mediator.bootstrap.bootstrap_streaming(None, lambda mapper: None, None, None, 3, True)
    assert shared.max_concurrent_event_handlers_per_stream == 3  # the spec's: all of the ceiling
