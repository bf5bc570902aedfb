"""The outbox relay against real databases (SQLite in tmp_path, PostgreSQL) and the real RabbitMQ."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import pathlib
import sys
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from mediator.message_brokers.protocol import Message
from mediator.message_brokers.rabbitmq import RabbitMQMessageBroker
from server.store import outbox_rows
from server.store.relay import OutboxRelay, RelayClosed
from server.store.relay_metrics import RelayMetrics
from server.store.schema import outbox
from server.store.store import Store
from tests.brokers.consumer import Consumer
from tests.brokers.tcp_proxy import TcpProxy
from tests.store.outbox_fixtures import (  # noqa: F401 - the *_fixture names are pytest fixtures
    TOPIC,
    FakeBroker,
    database_url_fixture,
    exchange_name_fixture,
    fast_settings,
    postgres_database_fixture,
    proxy_fixture,
    rabbitmq_fixture,
    rows_by_state,
    sqlite_url,
    stage,
    store_fixture,
)

WITHIN = 30  # seconds any wait of these tests may take at most


def sample(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_rows_reach_rabbitmq_oldest_first_with_their_message_id(
    store: Store,
    rabbitmq: str,
    exchange_name: str,
) -> None:
    staged = await stage(store.engine, 25)
    async with (
        Consumer(rabbitmq, exchange_name, TOPIC) as consumer,
        RabbitMQMessageBroker(rabbitmq, exchange_name) as broker,
        OutboxRelay(store.engine, broker, fast_settings(batch_size=10)) as relay,
    ):
        received = await consumer.wait_for(25, within=WITHIN)
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.published == 25)
        everything = await consumer.everything()

    assert [uuid.UUID(each.message_id or "") for each in everything] == staged  # in order, once each
    assert [each.envelope["message_id"] for each in received] == [str(each) for each in staged]
    assert [each.envelope["payload"] for each in received] == [{"index": index} for index in range(25)]
    rows = await rows_by_state(store.engine)
    assert list(rows) == ["published"]
    assert all(row["published_at"] is not None and row["attempts"] == 0 for row in rows["published"])


async def test_an_unreachable_broker_is_retried_with_backoff_then_the_row_is_dead_counted_and_replayable(
    store: Store,
    proxy: TcpProxy,
    rabbitmq: str,
    exchange_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy.refuse_new = True  # RabbitMQ looks down
    registry = CollectorRegistry()
    settings = fast_settings(max_attempts=3, backoff=0.2, max_backoff=0.4)
    [message_id] = await stage(store.engine, 1)
    async with (
        Consumer(rabbitmq, exchange_name, TOPIC) as consumer,
        contextlib.aclosing(
            RabbitMQMessageBroker(
                f"amqp://guest:guest@127.0.0.1:{proxy.port}/", exchange_name, max_attempts=1
            )
        ) as broker,
        OutboxRelay(store.engine, broker, settings, metrics=RelayMetrics(registry)) as relay,
    ):
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.failures >= 1)
        [row] = (await rows_by_state(store.engine))["pending"]
        failed_at = outbox_rows.now()
        retry_in = (outbox_rows.utc(row["next_attempt_at"]) - failed_at).total_seconds()
        assert row["attempts"] == 1
        assert "BrokerUnavailable" in row["last_error"]
        assert retry_in <= 0.2  # the first backoff, jittered into [0.1, 0.2] from the failure

        with caplog.at_level(logging.ERROR, logger="server.outbox"):
            async with asyncio.timeout(WITHIN):
                await relay.wait_for(lambda relay: sample(registry, "rill_outbox_dead") == 1)
        [dead] = (await rows_by_state(store.engine))["dead"]
        assert dead["attempts"] == 3
        assert "BrokerUnavailable" in dead["last_error"]
        assert relay.dead_lettered == 1
        assert sample(registry, "rill_outbox_dead_lettered_total") == 1
        assert sample(registry, "rill_outbox_publish_failures_total") == 3
        assert sample(registry, "rill_outbox_pending") == 0
        assert proxy.refused == 3  # one connection attempt per relay attempt: no more
        [line] = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert str(message_id) in line.getMessage()
        assert "OutboxTestEvent" in line.getMessage()
        assert "after 3 attempts" in line.getMessage()

        proxy.refuse_new = False  # RabbitMQ is back; the dead row waits for a replay
        async with store.engine.begin() as connection:
            assert await outbox_rows.replay(connection, outbox_rows.now(), None) == 1
        [received] = await consumer.wait_for(1, within=WITHIN)
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.published == 1)

    assert received.message_id == str(message_id)
    assert list(await rows_by_state(store.engine)) == ["published"]
    assert sample(registry, "rill_outbox_published_total") == 1


async def test_a_row_the_broker_refuses_does_not_hold_up_the_rows_behind_it(store: Store) -> None:
    staged = await stage(store.engine, 5)
    broker = FakeBroker(refused={staged[1]})
    # Its next attempt is a minute away: the rows behind it go now.
    settings = fast_settings(max_attempts=100, backoff=60, max_backoff=60)
    async with OutboxRelay(store.engine, broker, settings) as relay, asyncio.timeout(WITHIN):
        await relay.wait_for(lambda relay: relay.published == 4)

    assert [message.message_id for message in broker.sent] == [staged[0], *staged[2:]]
    [retrying] = (await rows_by_state(store.engine))["pending"]
    assert retrying["message_id"] == staged[1]
    assert retrying["attempts"] == 1
    assert "BrokerError: refused" in retrying["last_error"]


async def test_given_the_stores_committer_the_relay_records_through_it_on_sqlite(store: Store) -> None:
    """On SQLite the outcome of a round is a unit of the committer; on PostgreSQL the claim's
    transaction, which holds the rows' locks, records it."""
    staged = await stage(store.engine, 3)
    broker = FakeBroker(refused={staged[1]})
    settings = fast_settings(max_attempts=100, backoff=60, max_backoff=60)
    relay = OutboxRelay(store.engine, broker, settings, committer=store.committer)
    async with relay, asyncio.timeout(WITHIN):
        await relay.wait_for(lambda relay: relay.published == 2 and relay.failures == 1)

    rows = await rows_by_state(store.engine)
    assert [row["message_id"] for row in rows["published"]] == [staged[0], staged[2]]
    [retrying] = rows["pending"]
    assert (retrying["message_id"], retrying["attempts"]) == (staged[1], 1)
    assert "BrokerError: refused" in retrying["last_error"]
    assert relay.records >= 1
    through_committer = relay.records if store.embedded else 0
    assert store.committer.units_committed == through_committer


async def test_a_row_refused_max_attempts_times_is_dead(store: Store) -> None:
    staged = await stage(store.engine, 2)
    broker = FakeBroker(refused={staged[0]})
    async with (
        OutboxRelay(store.engine, broker, fast_settings(max_attempts=2)) as relay,
        asyncio.timeout(WITHIN),
    ):
        await relay.wait_for(lambda relay: relay.published == 1 and relay.dead_lettered == 1)

    assert broker.started_sends == 3  # two attempts of the refused row, one of the other
    [dead] = (await rows_by_state(store.engine))["dead"]
    assert (dead["message_id"], dead["attempts"]) == (staged[0], 2)


async def test_notify_wakes_the_relay_at_once(store: Store) -> None:
    broker = FakeBroker()
    async with OutboxRelay(store.engine, broker, fast_settings(poll_interval=3600)) as relay:
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.looks >= 1)  # it found nothing: asleep for an hour
            staged = await stage(store.engine, 3)
            relay.notify()
            await relay.wait_for(lambda relay: relay.published == 3)

    assert [message.message_id for message in broker.sent] == staged


async def test_stopping_finishes_the_publish_in_flight_and_leaves_the_rest_pending(store: Store) -> None:
    staged = await stage(store.engine, 3)
    broker = FakeBroker()
    broker.gate.clear()
    relay = OutboxRelay(store.engine, broker, fast_settings())
    await relay.start()
    async with asyncio.timeout(WITHIN):
        await broker.sending.wait()
        relay.stop()
        closing = asyncio.create_task(relay.aclose())
        broker.gate.set()
        await closing

    assert [message.message_id for message in broker.sent] == staged[:1]
    rows = await rows_by_state(store.engine)
    assert [row["message_id"] for row in rows["published"]] == staged[:1]
    assert [row["message_id"] for row in rows["pending"]] == staged[1:]
    assert all(row["attempts"] == 0 for row in rows["pending"])
    with pytest.raises(RelayClosed):
        await relay.start()


async def test_a_relay_cancelled_mid_publish_leaves_its_rows_to_the_next_one(store: Store) -> None:
    staged = await stage(store.engine, 2)
    stuck = FakeBroker()
    stuck.gate.clear()  # never confirms
    relay = OutboxRelay(store.engine, stuck, fast_settings())
    await relay.start()
    async with asyncio.timeout(WITHIN):
        await stuck.sending.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await relay.aclose()  # cancelled: its round is cancelled too

    assert list(await rows_by_state(store.engine)) == ["pending"]
    broker = FakeBroker()
    async with OutboxRelay(store.engine, broker, fast_settings()) as successor:
        async with asyncio.timeout(WITHIN):
            await successor.wait_for(lambda relay: relay.published == 2)
    assert [message.message_id for message in broker.sent] == staged


async def test_metrics_show_pending_rows_the_oldest_age_published_and_dead(store: Store) -> None:
    waiting = await stage(store.engine, 2, age=3600, due_in=3600)  # retrying in an hour
    due = await stage(store.engine, 3, start=10)
    registry = CollectorRegistry()
    broker = FakeBroker(refused={due[0]})
    relay = OutboxRelay(store.engine, broker, fast_settings(max_attempts=1), metrics=RelayMetrics(registry))
    async with relay:
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.published == 2 and relay.dead_lettered == 1)
            await relay.wait_for(lambda relay: sample(registry, "rill_outbox_dead") == 1)
        assert sample(registry, "rill_outbox_relay_publishing") == 1

    assert sample(registry, "rill_outbox_relay_publishing") == 0
    assert sample(registry, "rill_outbox_pending") == len(waiting)
    assert sample(registry, "rill_outbox_oldest_pending_seconds") >= 3600
    assert sample(registry, "rill_outbox_published_total") == 2
    assert sample(registry, "rill_outbox_dead_lettered_total") == 1
    assert sample(registry, "rill_outbox_publish_failures_total") == 1


class HeldUntil:
    """A broker whose first send waits until ``released`` is set (then sends to ``inner``)."""

    def __init__(self, inner: RabbitMQMessageBroker, released: asyncio.Event) -> None:
        self.inner = inner
        self.released = released
        self.holding = asyncio.Event()

    async def send_message(self, message: Message) -> None:
        if not self.released.is_set():
            self.holding.set()
            await self.released.wait()
        await self.inner.send_message(message)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Signalling:
    """A broker that sets ``sent`` once it sent a message."""

    def __init__(self, inner: RabbitMQMessageBroker, sent: asyncio.Event) -> None:
        self.inner = inner
        self.sent = sent

    async def send_message(self, message: Message) -> None:
        await self.inner.send_message(message)
        self.sent.set()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_two_relays_on_one_postgresql_database_share_the_rows_and_publish_each_once(
    postgres_database: str,
    rabbitmq: str,
    exchange_name: str,
) -> None:
    settings = fast_settings(batch_size=20)
    b_sent = asyncio.Event()
    # Two stores on one database, as two replicas have.
    async with Store(make_url(postgres_database)) as store_a, Store(make_url(postgres_database)) as store_b:
        staged = await stage(store_a.engine, 500)
        async with (
            Consumer(rabbitmq, exchange_name, TOPIC) as consumer,
            RabbitMQMessageBroker(rabbitmq, exchange_name) as rabbit_a,
            RabbitMQMessageBroker(rabbitmq, exchange_name) as rabbit_b,
        ):
            # A holds its first claim until B has published: B must have skipped A's locked rows.
            broker_a = HeldUntil(rabbit_a, b_sent)
            relay_a = OutboxRelay(store_a.engine, broker_a, settings)
            relay_b = OutboxRelay(store_b.engine, Signalling(rabbit_b, b_sent), settings)
            async with relay_a:
                async with asyncio.timeout(WITHIN):
                    await broker_a.holding.wait()
                async with relay_b, asyncio.timeout(WITHIN):
                    await consumer.wait_for(500, within=WITHIN)
                    await relay_a.wait_for(lambda relay: relay.published + relay_b.published == 500)
            everything = await consumer.everything()
        rows = await rows_by_state(store_a.engine)

    counts = collections.Counter(each.message_id or "" for each in everything)
    assert sorted(counts) == sorted(str(each) for each in staged)
    assert set(counts.values()) == {1}  # no row published twice
    assert relay_a.published > 0
    assert relay_b.published > 0
    assert relay_a.published + relay_b.published == 500
    assert list(rows) == ["published"]


async def test_one_relay_per_sqlite_file_publishes_and_another_takes_over_when_it_stops(
    tmp_path: pathlib.Path,
) -> None:
    url = make_url(sqlite_url(tmp_path / "rill.db"))
    settings = fast_settings()
    # Two stores on one file, as two workers have.
    async with Store(url) as store_a, Store(url) as store_b:
        broker_a, broker_b = FakeBroker(), FakeBroker()
        broker_a.gate.clear()
        relay_a = OutboxRelay(store_a.engine, broker_a, settings)
        relay_b = OutboxRelay(store_b.engine, broker_b, settings)
        first = await stage(store_a.engine, 5)
        async with asyncio.timeout(WITHIN):
            async with relay_a:
                await relay_a.wait_active()
                async with relay_b:
                    await broker_a.sending.wait()  # A holds its round open ...
                    looks = relay_b.looks
                    await relay_b.wait_for(lambda relay: relay.looks >= looks + 3)
                    assert not relay_b.active  # ... and B, looking meanwhile, may not publish
                    assert broker_b.started_sends == 0
                    broker_a.gate.set()
                    await relay_a.wait_for(lambda relay: relay.published == 5)
                    assert relay_b.published == 0

                    await relay_a.aclose()
                    await relay_b.wait_active()  # the lock is free: B takes over
                    second = await stage(store_b.engine, 5, start=100)
                    relay_b.notify()
                    await relay_b.wait_for(lambda relay: relay.published == 5)

    assert [message.message_id for message in broker_a.sent] == first
    assert [message.message_id for message in broker_b.sent] == second


HOLD_THE_LOCK = """
import pathlib, sys, time
from server.store.relay_lock import RelayLock
assert RelayLock(pathlib.Path(sys.argv[1])).try_acquire()
print("held", flush=True)
time.sleep(120)
"""


async def test_when_the_sqlite_lock_holder_is_killed_another_relay_takes_over(tmp_path: pathlib.Path) -> None:
    url = make_url(sqlite_url(tmp_path / "rill.db"))
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_THE_LOCK,
        str(tmp_path / "rill.db.relay.lock"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(WITHIN):
            assert await holder.stdout.readline() == b"held\n"
        async with Store(url) as store:
            staged = await stage(store.engine, 3)
            broker = FakeBroker()
            async with OutboxRelay(store.engine, broker, fast_settings()) as relay, asyncio.timeout(WITHIN):
                await relay.wait_for(lambda relay: relay.looks >= 3)
                assert not relay.active  # another process holds the file
                holder.kill()  # kill -9: no goodbye, the kernel releases the lock
                await holder.wait()
                await relay.wait_active()
                await relay.wait_for(lambda relay: relay.published == 3)
        assert [message.message_id for message in broker.sent] == staged
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_rows_published_longer_ago_than_keep_published_are_deleted(store: Store) -> None:
    old = await stage(store.engine, 2, age=3 * 86_400)
    recent = await stage(store.engine, 1, start=10)
    async with store.engine.begin() as connection:
        await connection.execute(
            sa.update(outbox)
            .where(outbox.c.message_id.in_(old))
            .values(state="published", published_at=outbox_rows.now() - datetime.timedelta(days=2))
        )
    broker = FakeBroker()
    async with OutboxRelay(store.engine, broker, fast_settings(keep_published=86_400)) as relay:
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.published == 1 and relay.looks >= 2)

    rows = await rows_by_state(store.engine)
    assert [row["message_id"] for row in rows["published"]] == recent  # a day is kept; two are not
