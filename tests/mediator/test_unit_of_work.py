"""Units of work: an item's event handlers change things together, committed before the item counts.

The fake store below stages what handlers write in the unit current in their run, and keeps it only
when the mediator commits the unit; its commit really suspends (it waits for the test, or yields to
the loop), as a database's does.
"""

import asyncio
import contextlib
import typing

import pytest

import mediator
from mediator import bootstrap
from mediator.exceptions import EventHandlerError, UnitOfWorkError
from mediator.message_brokers.protocol import Message
from mediator.unit_of_work import UnitOfWork, current_unit
from tests.mediator.fakes import Happened, Item, Produce, streaming


class FakeUnit:
    def __init__(self, store: "FakeStore") -> None:
        self.store = store
        self.staged: list[str] = []
        self.state = "open"

    def stage(self, write: str) -> None:
        assert self.state == "open", f"staged into a unit that is {self.state}"
        self.staged.append(write)

    async def commit(self) -> None:
        assert self.state == "open"
        self.state = "committing"
        self.store.committing.set()
        await self.store.commit_gate()
        if self.store.fail_commits:
            self.state = "failed"
            raise ConnectionError("the database went away")
        self.store.kept.extend(self.staged)
        self.state = "committed"

    def rollback(self) -> None:
        self.state = "rolled back"


class FakeStore:
    """A UnitOfWorkFactory: what it ``kept`` is what committed units staged."""

    def __init__(self) -> None:
        self.units: list[FakeUnit] = []
        self.kept: list[str] = []
        self.fail_commits = False
        self.hold: asyncio.Event | None = None  # when set, commits wait for it
        self.committing = asyncio.Event()  # set when a commit has begun

    def begin(self) -> FakeUnit:
        unit = FakeUnit(self)
        self.units.append(unit)
        return unit

    async def commit_gate(self) -> None:
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(0)  # a commit always suspends

    def states(self) -> list[str]:
        return [unit.state for unit in self.units]


def staging(write: str) -> None:
    unit = current_unit()
    assert isinstance(unit, FakeUnit), f"no unit current in the run: {unit!r}"
    unit.stage(write)


class Cascaded(mediator.DomainEvent, frozen=True):
    n: int


class Notice(mediator.NotificationEvent[dict[str, int]], frozen=True):
    topic: str = "notices"


class Records(mediator.EventHandler[Happened]):
    async def handle(self, event: Happened) -> None:
        await asyncio.sleep(0)  # really suspends
        if event.tag == "fail" and event.n == 1:
            raise ValueError("cannot record")
        staging(f"happened {event.n}")
        self._events = [Cascaded(n=event.n)]


class RecordsCascade(mediator.EventHandler[Cascaded]):
    async def handle(self, event: Cascaded) -> None:
        await asyncio.sleep(0)
        staging(f"cascaded {event.n}")


class StagingBroker:
    """A broker that writes notifications into the unit (as an outbox does)."""

    async def send_message(self, message: Message) -> None:
        await asyncio.sleep(0)
        staging(f"notice {message.payload['n']}")

    async def aclose(self) -> None:
        pass


class Emits(mediator.StreamingRequestHandler[Produce, Item]):
    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for n in range(request.count):
            self._events = [Happened(n=n, tag=request.tag), Notice(payload={"n": n})]
            yield Item(n=n, tag=request.tag)


EVENTS: dict[type[mediator.Event], list[type[mediator.EventHandler[typing.Any]]]] = {
    Happened: [Records],
    Cascaded: [RecordsCascade],
}


def with_units(store: FakeStore, **options: typing.Any) -> mediator.StreamingRequestMediator:
    return streaming(Emits, EVENTS, unit_of_work=store, message_broker=StagingBroker(), **options)


def item_writes(n: int) -> list[str]:
    return sorted([f"happened {n}", f"cascaded {n}", f"notice {n}"])


async def test_strict_yields_an_item_only_after_its_unit_with_every_write_of_its_events_committed() -> None:
    store = FakeStore()
    seen: list[list[str]] = []
    async with contextlib.aclosing(with_units(store).stream(Produce(count=3))) as items:
        async for item in items:
            unit = store.units[item.n]
            assert unit.state == "committed", f"item {item.n} delivered with its unit {unit.state}"
            seen.append(sorted(unit.staged))
    # One unit per item; the handler's events, the cascade and the notification all in it.
    assert seen == [item_writes(0), item_writes(1), item_writes(2)]
    assert sorted(store.kept) == sorted(w for n in range(3) for w in item_writes(n))


async def test_strict_holds_the_item_while_its_commit_waits() -> None:
    store = FakeStore()
    store.hold = asyncio.Event()
    items = with_units(store).stream(Produce(count=2))
    first = asyncio.ensure_future(anext(items))
    await store.committing.wait()
    assert store.units[0].state == "committing"
    assert not first.done()  # the runs ended; the commit is under way: the item waits for it
    store.hold.set()
    assert (await first).n == 0
    assert store.units[0].state == "committed"
    await items.aclose()


async def test_a_failed_run_rolls_its_item_back_and_ends_the_strict_stream_before_the_item() -> None:
    store = FakeStore()
    delivered: list[int] = []
    with pytest.raises(EventHandlerError, match="cannot record"):
        async for item in with_units(store).stream(Produce(count=3, tag="fail")):
            delivered.append(item.n)
    assert delivered == [0]
    assert store.states() == ["committed", "rolled back"]
    # Nothing of item 1 is kept: its notification ran and staged, yet was not committed.
    assert sorted(store.kept) == item_writes(0)


async def test_a_failed_commit_ends_the_strict_stream_before_the_item_with_the_cause() -> None:
    store = FakeStore()
    store.fail_commits = True
    stream = with_units(store).stream(Produce(count=2))
    with pytest.raises(UnitOfWorkError, match="Happened was not committed: ConnectionError") as raised:
        await anext(stream)
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert store.kept == []


async def test_overlapped_delivers_before_the_commit_and_ends_only_when_every_unit_committed() -> None:
    store = FakeStore()
    store.hold = asyncio.Event()
    states_when_delivered: list[str] = []
    stream = with_units(store, event_delivery="overlapped").stream(Produce(count=3))
    collected: list[int] = []
    all_delivered = asyncio.Event()

    async def consume() -> None:
        async for item in stream:
            states_when_delivered.append(store.units[item.n].state)
            collected.append(item.n)
            if len(collected) == 3:
                all_delivered.set()

    consumer = asyncio.create_task(consume())
    await all_delivered.wait()
    assert not consumer.done()  # every item delivered; the stream waits for the commits
    store.hold.set()
    await consumer
    assert "committed" not in states_when_delivered
    assert store.states() == ["committed"] * 3
    assert sorted(store.kept) == sorted(w for n in range(3) for w in item_writes(n))


async def test_a_stream_stopped_early_commits_the_units_of_the_items_it_delivered() -> None:
    # Overlapped: item 0 is delivered while its runs go on; the consumer leaves; the drain lets the
    # runs finish and the item's unit commits (its events are not lost with the consumer).
    store = FakeStore()
    release = asyncio.Event()

    class Slow(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            await release.wait()
            staging(f"slow {event.n}")

    mediator_ = streaming(
        Emits,
        {Happened: [Slow]},
        unit_of_work=store,
        message_broker=StagingBroker(),
        event_delivery="overlapped",
        drain_timeout=30,
    )
    stream = mediator_.stream(Produce(count=5))
    assert (await anext(stream)).n == 0
    closing = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0)
    assert not closing.done()
    release.set()
    await closing
    committed = [unit for unit in store.units if unit.state == "committed"]
    assert [sorted(unit.staged) for unit in committed][:1] == [["notice 0", "slow 0"]]
    assert all(unit.state == "committed" for unit in store.units)


async def test_runs_given_up_by_the_drain_roll_their_unit_back() -> None:
    store = FakeStore()
    started = asyncio.Event()

    class Hangs(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            staging(f"hangs {event.n}")
            started.set()
            await asyncio.Event().wait()

    mediator_ = streaming(
        Emits,
        {Happened: [Hangs]},
        unit_of_work=store,
        message_broker=StagingBroker(),
        event_delivery="overlapped",
        drain_timeout=30,
    )
    stream = mediator_.stream(Produce(count=1))
    assert (await anext(stream)).n == 0
    await started.wait()
    closing = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0)  # one step: aclose closes the handler and the drain begins
    assert mediator_.draining == 1
    assert mediator_.abandon_drains("the server is stopping") == 1
    with pytest.raises(asyncio.CancelledError):
        await closing  # the drain's task is cancelled, as a stopping server does
    assert store.states() == ["rolled back"]
    assert store.kept == []
    assert mediator_.events_abandoned == 1


async def test_send_commits_one_unit_with_every_event_of_the_request_before_it_returns() -> None:
    store = FakeStore()

    class Ask(mediator.Request):
        pass

    class Answers(mediator.RequestHandler[Ask, None]):
        async def handle(self, request: Ask) -> None:
            self._events = [Happened(n=1), Happened(n=2), Notice(payload={"n": 3})]

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Ask, Answers)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Happened, Records)
        mapper.bind(Cascaded, RecordsCascade)

    request_mediator = bootstrap.bootstrap(
        commands_mapper=commands,
        domain_events_mapper=events,
        message_broker=StagingBroker(),
        unit_of_work=store,
    )
    await request_mediator.send(Ask())
    assert store.states() == ["committed"]
    assert sorted(store.kept) == sorted(["happened 1", "cascaded 1", "happened 2", "cascaded 2", "notice 3"])


async def test_without_a_factory_no_unit_is_current_and_items_without_events_open_none() -> None:
    seen: list[UnitOfWork | None] = []

    class Looks(mediator.EventHandler[Happened]):
        async def handle(self, event: Happened) -> None:
            seen.append(current_unit())

    class Quiet(mediator.StreamingRequestHandler[Produce, Item]):
        async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
            for n in range(request.count):
                if n == 1:
                    self._events = [Happened(n=n)]
                yield Item(n=n)

    assert [i.n async for i in streaming(Quiet, {Happened: [Looks]}).stream(Produce(count=3))] == [0, 1, 2]
    assert seen == [None]
    store = FakeStore()
    with_store = streaming(Quiet, {Happened: [Looks]}, unit_of_work=store)
    assert [i.n async for i in with_store.stream(Produce())] == [0, 1, 2]
    assert store.states() == ["committed"]  # one unit: only item 1 emitted events
