"""The drain: a stream that ends early still handles the events of what it delivered.

Its bound (``drain_timeout``) is on running work: runs queued for a slot start when one frees and
complete; only what runs too long, or what is left when the drain itself is ended
(``abandon_drains``), is given up, and each such run is logged with its event and counted.
"""

import asyncio
import logging
import typing

import pytest

import mediator
from tests.mediator.fakes import Happened, Item, Produce, streaming


def two_events_per_item(closed: asyncio.Event) -> type[mediator.StreamingRequestHandler[Produce, Item]]:
    """Sets ``closed`` when closed early: its stream's drain starts right after, in the same step."""

    class Handler(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            try:
                for n in range(request.count):
                    self._events = [Happened(n=n, tag=request.tag), Happened(n=n + 100, tag=request.tag)]
                    yield Item(n=n, tag=request.tag)
            except GeneratorExit:
                closed.set()
                raise

    return Handler


async def test_runs_queued_at_close_start_when_a_slot_frees_within_the_timeout_and_complete() -> None:
    # One slot, held by another stream's run. Stream "b" is closed right after its first item,
    # with both of its runs still queued: once the slot frees, both start and complete.
    handled: list[str] = []
    holder_started, release_holder, closed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class Records(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.tag == "holder":
                holder_started.set()
                await release_holder.wait()
            await asyncio.sleep(0)  # really suspends
            handled.append(f"{event.tag}{event.n}")

    mediator_ = streaming(
        two_events_per_item(closed),
        {Happened: [Records]},
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
        drain_timeout=30,
    )
    holder = mediator_.stream(Produce(count=1, tag="holder"))
    assert await anext(holder) == Item(n=0, tag="holder")
    await holder_started.wait()
    b = mediator_.stream(Produce(count=3, tag="b"))
    assert await anext(b) == Item(n=0, tag="b")  # delivered; its two runs wait for the slot
    closing = asyncio.create_task(b.aclose())
    await closed.wait()
    assert mediator_.draining == 1
    assert handled == []
    release_holder.set()
    async with asyncio.timeout(10):  # a safety net against a hang, not a timing assertion
        await closing
        await holder.aclose()
    assert sorted(handled) == ["b0", "b100", "holder0", "holder100"]
    assert mediator_.events_abandoned == 0
    assert mediator_.draining == 0


async def test_abandoning_drains_logs_every_run_left_with_its_event_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, closed = asyncio.Event(), asyncio.Event()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            started.set()
            await asyncio.Event().wait()

    mediator_ = streaming(
        two_events_per_item(closed),
        {Happened: [Hangs]},
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
        drain_timeout=3600,  # nothing would end this drain but abandon_drains
    )
    stream = mediator_.stream(Produce(count=3))
    assert await anext(stream) == Item(n=0)
    await started.wait()
    closing = asyncio.create_task(stream.aclose())
    await closed.wait()
    assert mediator_.draining == 1

    with caplog.at_level(logging.ERROR, logger="mediator"):
        assert mediator_.abandon_drains("the server is shutting down") == 1
        with pytest.raises(asyncio.CancelledError):
            await closing

    messages = [record.getMessage() for record in caplog.records if record.name == "mediator"]
    lines = [message for message in messages if "shutting down" in message]
    assert len(lines) == 2, lines
    assert any("Happened(n=0" in line and "was cancelled" in line for line in lines)
    assert any("Happened(n=100" in line and "was never started" in line for line in lines)
    assert mediator_.events_abandoned == 2
    assert mediator_.draining == 0
    assert mediator_.event_handlers_running == 0
