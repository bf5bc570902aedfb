"""Two ``python -m server`` replicas sharing PostgreSQL and RabbitMQ behind HAProxy; one is killed
(SIGKILL) in the middle of a stream. The client resumes through the proxy on the other; afterwards
every order it received is found by either replica, and every one's notification is on the queue."""

from __future__ import annotations

import contextlib
import pathlib
import typing

import pytest

from client import RetryPolicy, RillClient, RillError
from tests.deploy.conftest import Notifications, broker_url, found_orders, message_ids_per_order
from tests.deploy.processes import ServerProcess, running_server
from tests.deploy.proxy import running_proxy

# In strict delivery an item leaves only once its unit of work is committed, and the two streams'
# units share group commits: when the client has read 10 items of each, each has produced a few
# tens of its 300 (not the whole stream), so the kill cuts one in the middle on any machine.
ORDERS_PER_STREAM = 300
RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.5)

# Several processes started and stopped on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(300)


def replica(
    tmp_path: pathlib.Path, name: str, env: dict[str, str]
) -> typing.AsyncContextManager[ServerProcess]:
    return running_server(
        "--address", "127.0.0.1:0", "--http-address", "", log=tmp_path / f"{name}.log", env=env
    )


async def test_a_replica_killed_mid_stream_loses_nothing_delivered(
    tmp_path: pathlib.Path, database_url: str, notifications: Notifications
) -> None:
    env = {"RILL_DATABASE_URL": database_url, "RILL_BROKER": broker_url(notifications)}
    ids = {k: [f"s{k}-{n}" for n in range(ORDERS_PER_STREAM)] for k in range(2)}
    delivered: dict[int, list[str]] = {0: [], 1: []}
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(replica(tmp_path, "replica0", env))
        second = await stack.enter_async_context(replica(tmp_path, "replica1", env))
        proxy = await stack.enter_async_context(
            running_proxy([first.address, second.address], tmp_path / "haproxy.log")
        )
        client = await stack.enter_async_context(RillClient(proxy.address, retry=RETRY))

        # Two streams through the proxy, both delivering: round robin puts one on each replica.
        streams = {k: await stack.enter_async_context(client.process_orders(ids[k])) for k in ids}
        for k, stream in streams.items():
            for _ in range(10):
                delivered[k].append((await anext(stream)).order_id)
        first.kill()
        errors: dict[int, RillError] = {}
        for k, stream in streams.items():
            try:
                async for result in stream:
                    delivered[k].append(result.order_id)
            except RillError as error:
                errors[k] = error
        assert len(errors) == 1, f"one stream was on the killed replica, one finished: {errors}"
        (cut,) = errors
        assert delivered[1 - cut] == ids[1 - cut]
        assert delivered[cut] == ids[cut][: len(delivered[cut])]
        assert len(delivered[cut]) < ORDERS_PER_STREAM

        # The caller resumes with what it did not get; the proxy sends it to the live replica.
        remainder = ids[cut][len(delivered[cut]) :]
        async with client.process_orders(remainder) as resumed:
            assert [result.order_id async for result in resumed] == remainder
        await first.process.wait()

        # Every order delivered is readable through either replica (the killed one started again).
        everything = [order_id for k in ids for order_id in ids[k]]
        again = await stack.enter_async_context(replica(tmp_path, "replica0-again", env))
        for address in (again.address, second.address):
            assert await found_orders(address, everything) == len(everything)

        # Every one's notification reaches the queue (the killed replica's committed rows are published
        # by the other relays); a duplicate is the same message again (at least once, one message_id).
        received = await notifications.wait_until(
            lambda messages: set(message_ids_per_order(messages)) >= set(everything)
        )
        per_order = message_ids_per_order(received)
        first_time = set(delivered[0] + delivered[1]) - set(remainder)
        assert all(len(per_order[order_id]) == 1 for order_id in first_time), {
            order_id: per_order[order_id] for order_id in first_time if len(per_order[order_id]) > 1
        }
        # The resumed orders may have been processed twice (by the killed replica, ahead of what it
        # delivered, then again): one message_id per processing.
        assert all(len(per_order[order_id]) <= 2 for order_id in remainder)
