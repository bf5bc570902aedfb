"""Runs that end other than by returning: cancelled from inside, given up by a drain, too deep.

Each test here was added for a mutant of ``mediator/_dispatch.py`` that the other tests let
survive (docs/testing.md, "Surviving mutants"). The log lines asserted are the promise itself: a
run given up is recorded nowhere else than in its line (and the ``events_abandoned`` count).
"""

from __future__ import annotations

import asyncio
import logging
import re
import typing

import pytest

import mediator
from mediator.exceptions import EventCascadeTooDeep, UnitOfWorkError
from tests.mediator.fakes import Happened, Item, Produce, collect, other_tasks, streaming
from tests.mediator.test_unit_of_work import Cascaded, FakeStore, Records, RecordsCascade, with_units


class Emits(mediator.StreamingRequestHandler[Produce, Item]):
    """One ``Happened`` per item; sets ``closed`` when closed early (its drain starts right after)."""

    closed: typing.ClassVar[asyncio.Event]

    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        try:
            for n in range(request.count):
                self._events = [Happened(n=n, tag=request.tag)]
                yield Item(n=n, tag=request.tag)
        except GeneratorExit:
            Emits.closed.set()
            raise


@pytest.fixture(autouse=True)
def _closed() -> None:
    Emits.closed = asyncio.Event()


def mediator_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The mediator's log lines, with the tests' local handler classes named by their own name
    (wherever in the line the name stands)."""
    return [
        re.sub(r"\S*<locals>\.", "", record.getMessage())
        for record in caplog.records
        if record.name == "mediator"
    ]


async def close_then_abandon(
    streams: mediator.StreamingRequestMediator,
    stream: typing.AsyncGenerator[typing.Any, None],
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> int:
    """Close ``stream`` (its handler closes, its drain starts), then end that drain as a stopping
    server does; its log lines are captured. The number of drains ended."""
    closing = asyncio.create_task(stream.aclose())
    await Emits.closed.wait()
    with caplog.at_level(logging.ERROR, logger="mediator"):
        ended = streams.abandon_drains(reason)
        with pytest.raises(asyncio.CancelledError):
            await closing
    return ended


async def test_a_run_cancelled_from_inside_its_handler_fails_the_stream_naming_it() -> None:
    # Nobody cancelled the run: what the handler awaited was cancelled under it.
    class AwaitsACancelledTask(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            lookup = asyncio.ensure_future(asyncio.Event().wait())
            await asyncio.sleep(0)
            lookup.cancel()
            await lookup

    delivered: list[int] = []
    with pytest.raises(mediator.EventHandlerError) as raised:
        async for item in streaming(Emits, {Happened: [AwaitsACancelledTask]}).stream(Produce()):
            delivered.append(item.n)
    assert delivered == []
    assert str(raised.value).endswith(".AwaitsACancelledTask failed handling Happened: cancelled")
    assert raised.value.event == Happened(n=0)


async def test_a_commit_cancelled_from_inside_fails_the_stream_with_a_unit_of_work_error() -> None:
    store = FakeStore()

    async def cancelled_under_the_commit() -> None:
        query = asyncio.ensure_future(asyncio.Event().wait())
        await asyncio.sleep(0)
        query.cancel()
        await query

    store.commit_gate = cancelled_under_the_commit  # type: ignore[method-assign]
    with pytest.raises(UnitOfWorkError) as raised:
        await anext(with_units(store).stream(Produce(count=2)))
    assert str(raised.value) == "the unit of work of Happened was not committed: cancelled"
    assert store.kept == []


async def test_an_event_nobody_handles_opens_a_unit_that_is_not_committed() -> None:
    store = FakeStore()
    items = [item.n async for item in streaming(Emits, unit_of_work=store).stream(Produce(count=2))]
    assert items == [0, 1]
    assert store.states() == ["rolled back", "rolled back"]  # nothing ran: no empty commit


async def test_a_cascade_too_deep_rolls_the_items_unit_back() -> None:
    store = FakeStore()

    class Echoes(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)
            self._events = [Happened(n=event.n + 1)]

    streams = streaming(Emits, {Happened: [Echoes]}, unit_of_work=store, max_event_cascade_depth=2)
    with pytest.raises(EventCascadeTooDeep):
        await anext(streams.stream(Produce()))
    assert store.states() == ["rolled back"]


async def test_giving_up_logs_each_run_once_and_leaves_no_task_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One slot per stream: item 0's first run hangs, its second is queued. Ending the drain gives up
    # both (one line each, nothing else logged), rolls the unit back, and every task has ended.
    store = FakeStore()
    started = asyncio.Event()
    cleaned_up: list[str] = []

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # its cleanup suspends too
                cleaned_up.append("hangs")

    class Second(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.sleep(0)

    streams = streaming(
        Emits,
        {Happened: [Hangs, Second]},
        unit_of_work=store,
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
        drain_timeout=3600,  # nothing but abandon_drains ends this drain
    )
    stream = streams.stream(Produce(count=3))
    assert await anext(stream) == Item(n=0)
    await started.wait()
    assert await close_then_abandon(streams, stream, caplog, "the server is stopping") == 1
    assert cleaned_up == ["hangs"]  # the cancelled run finished before the stream's close returned
    assert other_tasks() == set()
    lines = mediator_lines(caplog)
    assert sorted(lines) == [
        "Hangs for Happened(n=0, tag='') was cancelled: the server is stopping",
        "Second for Happened(n=0, tag='') was never started: the server is stopping",
    ]
    assert streams.events_abandoned == 2
    assert store.states() == ["rolled back"]


async def test_a_commit_left_going_by_an_ended_drain_is_logged_with_the_items_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    store.hold = asyncio.Event()  # never set: the commit waits for ever
    streams = streaming(
        Emits,
        {Happened: [Records], Cascaded: [RecordsCascade]},
        unit_of_work=store,
        event_delivery="overlapped",
        drain_timeout=3600,
    )
    stream = streams.stream(Produce(count=3))
    assert (await anext(stream)).n == 0
    await store.committing.wait()
    assert await close_then_abandon(streams, stream, caplog, "the server is stopping") == 1
    assert mediator_lines(caplog) == [
        "the unit of work's commit for Happened(n=0, tag='') was cancelled: the server is stopping"
    ]
    assert streams.events_abandoned == 1
    assert store.kept == []
    assert store.states()[0] == "committing"  # cancelled mid-commit: the store keeps nothing of it


class Notice(mediator.NotificationEvent[dict[str, str]], frozen=True):
    topic: str = "notices"


class Long(mediator.DomainEvent, frozen=True):
    text: str


class HangingBroker:
    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def send_message(self, message: object) -> None:
        self.started.set()
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        pass


async def test_a_run_given_up_is_logged_with_the_notifications_id_or_the_events_fields_cut_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notice = Notice(payload={"a": "b"})
    long = Long(text="x" * 400)
    started = asyncio.Event()

    class HangsOnLong(mediator.EventHandler[Long]):
        async def handle(self, event: Long) -> None:
            started.set()
            await asyncio.Event().wait()

    class Both(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            try:
                self._events = [notice, long]
                yield Item(n=0)
                yield Item(n=1)
            except GeneratorExit:
                Emits.closed.set()
                raise

    broker = HangingBroker()
    streams = streaming(
        Both, {Long: [HangsOnLong]}, message_broker=broker, event_delivery="overlapped", drain_timeout=3600
    )
    stream = streams.stream(Produce())
    assert (await anext(stream)).n == 0
    await broker.started.wait()
    await started.wait()
    await close_then_abandon(streams, stream, caplog, "stopping")
    lines = mediator_lines(caplog)
    assert f"Notice {notice.event_id} was cancelled: stopping" in "\n".join(lines), lines
    (long_line,) = [line for line in lines if line.startswith("HangsOnLong")]
    fields = long_line.removeprefix("HangsOnLong for ").removesuffix(" was cancelled: stopping")
    assert len(fields) == 300
    assert fields == repr(long)[:297] + "..."


async def test_a_run_started_during_a_drain_of_queued_runs_only_gets_the_drains_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # At the drain's start this stream has only a queued run (the one slot is another stream's).
    # When the slot frees, the run starts, hangs, and is cancelled by the drain's bound.
    holder_started, release_holder = asyncio.Event(), asyncio.Event()
    started = asyncio.Event()

    class Handles(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.tag == "holder":
                holder_started.set()
                await release_holder.wait()
                return
            started.set()
            await asyncio.Event().wait()  # hangs: only the drain's bound ends it

    streams = streaming(
        Emits,
        {Happened: [Handles]},
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
        drain_timeout=0.05,
    )
    holder = streams.stream(Produce(count=2, tag="holder"))
    assert (await anext(holder)).tag == "holder"
    await holder_started.wait()
    stream = streams.stream(Produce(count=3))
    assert (await anext(stream)).n == 0  # its run waits for the slot
    closing = asyncio.create_task(stream.aclose())
    await Emits.closed.wait()
    release_holder.set()
    with caplog.at_level(logging.ERROR, logger="mediator"):
        async with asyncio.timeout(30):  # a guard against a hang, not a timing assertion
            await closing
    assert started.is_set()
    assert streams.events_abandoned == 1
    assert any("ran past the stream's drain timeout" in line for line in mediator_lines(caplog))
    await holder.aclose()


async def test_runs_cut_short_by_the_drains_bound_one_slot_after_the_other_roll_their_unit_back() -> None:
    # One slot: item 0's first run hangs and its second is queued. The drain's bound cancels the
    # first; while the drain waits for that cancellation, the freed slot starts the second, which
    # hangs too and gets the bound from its own start. Both given up: the unit is rolled back.
    store = FakeStore()
    started = asyncio.Event()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            started.set()
            await asyncio.Event().wait()

    class HangsToo(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await asyncio.Event().wait()

    streams = streaming(
        Emits,
        {Happened: [Hangs, HangsToo]},
        unit_of_work=store,
        event_delivery="overlapped",
        max_concurrent_event_handlers=1,
        drain_timeout=0.05,
    )
    stream = streams.stream(Produce(count=3))
    assert await anext(stream) == Item(n=0)
    await started.wait()
    async with asyncio.timeout(30):  # a guard against a hang, not a timing assertion
        await stream.aclose()
    assert streams.events_abandoned == 2
    assert store.states() == ["rolled back"]
    assert other_tasks() == set()


async def test_a_queued_run_that_ends_at_once_when_another_streams_run_frees_its_slot() -> None:
    # One slot, held by stream a's run; stream b's run is queued and b waits for it to start. When
    # a's run ends, b's run starts in that same step and ends at once (its handler never suspends,
    # which is the case under test): both streams go on.
    release = asyncio.Event()
    held = asyncio.Event()
    handled: list[str] = []

    class Handles(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            if event.tag == "a":
                held.set()
                await release.wait()
            handled.append(f"{event.tag}{event.n}")

    streams = streaming(
        Emits, {Happened: [Handles]}, event_delivery="overlapped", max_concurrent_event_handlers=1
    )
    a = asyncio.create_task(collect(streams.stream(Produce(count=1, tag="a"))))
    await held.wait()
    b = streams.stream(Produce(count=2, tag="b"))
    assert await anext(b) == Item(n=0, tag="b")  # its run is queued behind a's
    b_rest = asyncio.create_task(collect(b))
    await asyncio.sleep(0)  # one step: b's stream parks until its run has started
    assert not b_rest.done()
    release.set()
    async with asyncio.timeout(30):  # a guard against a hang, not a timing assertion
        assert [item.n for item in await a] == [0]
        assert [item.n for item in await b_rest] == [1]
    assert sorted(handled) == ["a0", "b0", "b1"]


async def test_events_emitted_by_a_run_that_swallows_its_giving_up_are_logged_not_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A handler that catches the cancellation of a drain given up and still emits: the batch has
    # given up, so its events are not handled; one line says how many, by whom, and why.
    started = asyncio.Event()
    cascaded: list[int] = []

    class Swallows(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self._events = [Cascaded(n=event.n), Cascaded(n=event.n + 1)]

    class Cascades(mediator.EventHandler[Cascaded]):
        async def handle(self, event: Cascaded) -> None:
            cascaded.append(event.n)

    streams = streaming(
        Emits, {Happened: [Swallows], Cascaded: [Cascades]}, event_delivery="overlapped", drain_timeout=3600
    )
    stream = streams.stream(Produce(count=3))
    assert await anext(stream) == Item(n=0)
    await started.wait()
    assert await close_then_abandon(streams, stream, caplog, "the server is stopping") == 1
    assert cascaded == []
    lines = mediator_lines(caplog)
    assert len(lines) == 2  # the run's own line, then its events'
    assert lines[1] == "2 events emitted by Swallows were not handled: the server is stopping"
    assert other_tasks() == set()
