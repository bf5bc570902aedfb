"""Units of work and the group committer, against a real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime
import typing
import uuid

import pytest
import sqlalchemy as sa

import mediator
from mediator import bootstrap
from mediator.message_brokers.protocol import Message
from server.store import CommitFailed, ForeignUnit, OutboxBroker, Store, UnitClosed, Write, upsert
from server.store.schema import orders, outbox
from tests.store.conftest import store_of

NOW = datetime.datetime(2026, 12, 8, 1, 0, tzinfo=datetime.UTC)


def order_row(order_id: str, status: str = "processed") -> dict[str, typing.Any]:
    return {
        "order_id": order_id,
        "customer_id": f"customer_{order_id}",
        "total_amount": 100.0,
        "status": status,
        "processed_at": NOW,
    }


def message(topic: str = "orders.processed") -> Message:
    return Message(
        message_id=uuid.uuid4(), message_name="OrderProcessed", topic=topic, occurred_at=NOW, payload={"a": 1}
    )


async def stored_orders(store: Store) -> dict[str, str]:
    async with store.reader.connect() as connection:
        rows = await connection.execute(sa.select(orders.c.order_id, orders.c.status))
        return {row.order_id: row.status for row in rows}


async def outbox_ids(store: Store) -> set[uuid.UUID]:
    async with store.reader.connect() as connection:
        return set((await connection.execute(sa.select(outbox.c.message_id))).scalars())


def count_commits(store: Store) -> list[int]:
    """One entry per transaction the store's engine commits (SQLAlchemy's commit event)."""
    commits: list[int] = []
    sa.event.listen(store.engine.sync_engine, "commit", lambda connection: commits.append(1))
    return commits


async def test_a_unit_is_written_whole_or_not_at_all(store: Store) -> None:
    taken = message()
    await store.write(Write(outbox.insert(), {**_outbox_row(taken)}))
    unit = store.units.begin()
    unit.stage(upsert(orders, order_row("a")), Write(outbox.insert(), _outbox_row(taken)))  # a duplicate id
    with pytest.raises(CommitFailed):
        await unit.commit()
    assert await stored_orders(store) == {}, "the unit's first write was kept although its second failed"


async def test_concurrent_units_share_one_transaction(store: Store) -> None:
    commits = count_commits(store)
    units = [store.units.begin() for _ in range(100)]
    for index, unit in enumerate(units):
        unit.stage(upsert(orders, order_row(f"o{index}")))
    await asyncio.gather(*(unit.commit() for unit in units))
    assert len(await stored_orders(store)) == 100
    assert 1 <= len(commits) <= 5, f"100 concurrent units took {len(commits)} transactions"
    assert store.committer.units_committed == 100


async def test_a_unit_waiting_for_a_group_rides_in_the_next_one_another_unit_starts(store: Store) -> None:
    commits = count_commits(store)
    rider, other = store.units.begin(), store.units.begin()
    rider.stage(upsert(orders, order_row("rider")))
    other.stage(upsert(orders, order_row("other")))
    riding = asyncio.ensure_future(rider.commit(wait_for_group=3600))
    # A read hands the loop to the committer: a rider that started a group would be in it by now.
    assert await stored_orders(store) == {}
    assert not riding.done()
    async with asyncio.timeout(30):
        await other.commit()
        await riding
    assert await stored_orders(store) == {"rider": "processed", "other": "processed"}
    assert len(commits) == 1, "the rider went in a transaction of its own"


async def test_a_unit_waiting_for_a_group_is_written_alone_once_its_wait_is_over(store: Store) -> None:
    commits = count_commits(store)
    rider = store.units.begin()
    rider.stage(upsert(orders, order_row("rider")))
    async with asyncio.timeout(30):  # no other unit comes: it goes alone after 10 ms
        await rider.commit(wait_for_group=0.01)
    assert await stored_orders(store) == {"rider": "processed"}
    assert len(commits) == 1


async def test_a_bad_unit_in_a_group_fails_alone(store: Store) -> None:
    taken = message()
    await store.write(Write(outbox.insert(), _outbox_row(taken)))
    units = [store.units.begin() for _ in range(20)]
    for index, unit in enumerate(units):
        unit.stage(upsert(orders, order_row(f"o{index}")))
    units[7].stage(Write(outbox.insert(), _outbox_row(taken)))  # breaks the primary key
    results = await asyncio.gather(*(unit.commit() for unit in units), return_exceptions=True)
    assert [index for index, result in enumerate(results) if result is not None] == [7]
    assert isinstance(results[7], CommitFailed)
    assert set(await stored_orders(store)) == {f"o{index}" for index in range(20)} - {"o7"}


async def test_writes_of_a_unit_keep_their_order(store: Store) -> None:
    unit = store.units.begin()
    unit.stage(upsert(orders, order_row("a", "first")), upsert(orders, order_row("a", "second")))
    other = store.units.begin()
    other.stage(upsert(orders, order_row("b", "first")))
    await asyncio.gather(unit.commit(), other.commit())
    assert await stored_orders(store) == {"a": "second", "b": "first"}


async def test_a_rolled_back_unit_writes_nothing_and_takes_no_more(store: Store) -> None:
    unit = store.units.begin()
    unit.stage(upsert(orders, order_row("a")))
    unit.rollback()
    with pytest.raises(UnitClosed):
        unit.stage(upsert(orders, order_row("b")))
    with pytest.raises(UnitClosed):
        await unit.commit()
    assert await stored_orders(store) == {}


async def test_a_committed_unit_takes_no_more_writes(store: Store) -> None:
    unit = store.units.begin()
    unit.stage(upsert(orders, order_row("a")))
    await unit.commit()
    with pytest.raises(UnitClosed):
        unit.stage(upsert(orders, order_row("b")))
    assert await stored_orders(store) == {"a": "processed"}


async def test_a_commit_cancelled_before_its_group_began_writes_nothing(
    store_settings: dict[str, typing.Any],
) -> None:
    from server.store import StoreSettings

    store = store_of(store_settings, StoreSettings(commit_delay=1.0))  # the group waits: time to cancel
    async with store:
        kept, dropped = store.units.begin(), store.units.begin()
        kept.stage(upsert(orders, order_row("kept")))
        dropped.stage(upsert(orders, order_row("dropped")))
        dropping = asyncio.ensure_future(dropped.commit())
        keeping = asyncio.ensure_future(kept.commit())
        await asyncio.sleep(0)  # both have run up to waiting for their group
        dropping.cancel()
        await keeping
        with pytest.raises(asyncio.CancelledError):
            await dropping
        assert await stored_orders(store) == {"kept": "processed"}


async def test_outbox_rows_outside_a_unit_are_written_at_once_and_wake_the_relay(store: Store) -> None:
    broker = OutboxBroker(store)
    woken: list[int] = []
    broker.on_committed.append(lambda: woken.append(1))
    sent = message()
    await broker.send_message(sent)
    assert await outbox_ids(store) == {sent.message_id}
    assert woken == [1]


async def test_the_relay_is_woken_once_per_group(store: Store) -> None:
    broker = OutboxBroker(store)
    woken: list[int] = []
    broker.on_committed.append(lambda: woken.append(1))
    commits = count_commits(store)
    await asyncio.gather(*(broker.send_message(message()) for _ in range(50)))
    assert len(await outbox_ids(store)) == 50
    assert len(woken) == len(commits) < 50


async def test_a_row_stored_keeps_its_instant_in_utc(store: Store) -> None:
    sent = Message(
        message_id=uuid.uuid4(),
        message_name="n",
        topic="t",
        occurred_at=datetime.datetime(
            2026, 12, 8, 3, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        payload=[1, "x"],
    )
    await OutboxBroker(store).send_message(sent)
    async with store.reader.connect() as connection:
        row = (await connection.execute(sa.select(outbox))).one()
    assert row.occurred_at == datetime.datetime(2026, 12, 8, 1, 0, tzinfo=datetime.UTC)
    assert row.occurred_at.tzinfo is datetime.UTC
    assert row.payload == [1, "x"]
    assert row.state == "pending"
    assert row.attempts == 0
    with pytest.raises(CommitFailed):  # a naive time is refused, not guessed
        await store.write(upsert(orders, {**order_row("n"), "processed_at": datetime.datetime(2026, 1, 1)}))


class Done(mediator.Response):
    n: int


class Make(mediator.Request[Done]):
    count: int
    fail_at: int = -1


class Made(mediator.DomainEvent, frozen=True):
    n: int
    fail: bool


class Told(mediator.NotificationEvent[dict[str, int]], frozen=True):
    topic: str = "made"


class MakeHandler(mediator.StreamingRequestHandler[Make, Done]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, request: Make) -> typing.AsyncIterator[Done]:
        for n in range(request.count):
            self._events.append(Made(n=n, fail=n == request.fail_at))
            self._events.append(Told(payload={"n": n}))
            yield Done(n=n)


def made_handler(store: Store) -> type[mediator.EventHandler[Made]]:
    class MadeHandler(mediator.EventHandler[Made]):
        async def handle(self, event: Made) -> None:
            await store.write(upsert(orders, order_row(f"m{event.n}")))
            await asyncio.sleep(0.01)  # really suspends: the notification's run goes on meanwhile
            if event.fail:
                raise RuntimeError("made handler failed")

    return MadeHandler


async def test_an_items_rows_and_notification_are_kept_together_through_the_mediator(store: Store) -> None:
    broker = OutboxBroker(store)
    made = made_handler(store)
    streaming = bootstrap.bootstrap_streaming(
        commands_mapper=lambda m: m.bind(Make, MakeHandler),
        domain_events_mapper=lambda m: m.bind(Made, made),
        message_broker=broker,
        unit_of_work=store.units,
    )
    delivered = []
    with pytest.raises(mediator.exceptions.EventHandlingError):
        async for item in streaming.stream(Make(count=5, fail_at=2)):
            delivered.append(item.n)
            # strict: when an item arrives, its unit is committed
            assert f"m{item.n}" in await stored_orders(store)
    assert delivered == [0, 1]
    assert set(await stored_orders(store)) == {"m0", "m1"}, "the failed item's row was kept"
    assert len(await outbox_ids(store)) == 2, "the failed item's notification was kept"


async def test_a_write_in_another_stores_unit_is_refused(
    store: Store, store_settings: dict[str, typing.Any]
) -> None:
    other = store_of({**store_settings, "state_dir": store_settings["state_dir"] / "other"})
    seen: list[BaseException] = []

    class Writes(mediator.EventHandler[Made]):
        async def handle(self, event: Made) -> None:
            try:
                await other.write(upsert(orders, order_row("x")))
            except ForeignUnit as error:
                seen.append(error)
                raise

    streaming = bootstrap.bootstrap_streaming(
        commands_mapper=lambda m: m.bind(Make, MakeHandler),
        domain_events_mapper=lambda m: m.bind(Made, Writes),
        unit_of_work=store.units,
    )
    with pytest.raises(mediator.exceptions.EventHandlingError):
        async for _ in streaming.stream(Make(count=1)):
            pass
    assert len(seen) == 1
    await other.aclose()


def _outbox_row(sent: Message) -> dict[str, typing.Any]:
    from server.store.outbox_broker import outbox_row

    return outbox_row(sent)


async def test_a_commit_cancelled_while_its_transaction_runs_is_written_whole(store: Store) -> None:
    """A drain giving up cancels commits: one whose transaction has begun is written whole."""
    running, release = asyncio.Event(), asyncio.Event()

    async def slow(connection: typing.Any) -> None:
        running.set()
        await release.wait()

    unit = store.units.begin()
    unit.stage(upsert(orders, order_row("before")), slow, upsert(orders, order_row("after")))
    committing = asyncio.ensure_future(unit.commit())
    await running.wait()
    committing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await committing
    release.set()
    await store.committer.aclose()  # waits for the transaction in flight
    assert await stored_orders(store) == {"before": "processed", "after": "processed"}
