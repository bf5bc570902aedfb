"""``kill -9`` of ``python -m server`` (PostgreSQL and RabbitMQ configured) in the middle of a stream:
after the restart every order the client received is found, and its notification reaches RabbitMQ,
relayed after the restart when the broker had not taken it before the kill."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import pytest

from client import RetryPolicy, RillClient
from tests.brokers.tcp_proxy import TcpProxy
from tests.deploy.conftest import Notifications, broker_url, found_orders, message_ids_per_order
from tests.deploy.processes import running_server

ORDERS = 5000
# The test's sizes (the figures in docs/reliability.md: python -m tests.deploy.crash_figures, 200 and 1,000).
BEFORE_CUT = 100  # items delivered while the broker is reachable
BEFORE_KILL = 400  # items delivered in all when the server is killed

# A few hundred commits before the kill and a restart: minutes on a loaded 2-core machine at worst.
pytestmark = pytest.mark.timeout(300)


@dataclasses.dataclass(frozen=True)
class Figures:
    delivered: int
    """Orders the client received before the kill."""
    notified_before: int
    """Of those, notifications on the queue at the kill."""
    found_after: int
    """Of those, found by GetOrder after the restart."""
    notified_after: int
    """Of those, notifications on the queue after the restart."""
    relay_seconds: float
    """From the restarted server listening to the last missing notification on the queue."""
    most_message_ids: int
    """The most distinct ``message_id`` one delivered order's notifications carry (1: duplicates are
    the same message again)."""


async def crash_and_restart(
    tmp_path: pathlib.Path,
    database_url: str,
    notifications: Notifications,
    *,
    before_cut: int = BEFORE_CUT,
    before_kill: int = BEFORE_KILL,
) -> Figures:
    """The scenario, with its figures: the broker is cut after ``before_cut`` items (the outbox keeps
    the rest), the server killed after ``before_kill``, then started again with the broker back."""
    env = {"RILL_DATABASE_URL": database_url}
    ids = [f"o{n}" for n in range(ORDERS)]
    async with TcpProxy("127.0.0.1", 5672) as broker_link:
        # The server's broker connection goes through a link the test cuts (RabbitMQ stays up).
        cut_url = broker_url(notifications).replace("127.0.0.1:5672", f"127.0.0.1:{broker_link.port}")
        async with running_server(
            "--address",
            "127.0.0.1:0",
            "--http-address",
            "",
            log=tmp_path / "server.log",
            env={**env, "RILL_BROKER": cut_url},
        ) as server:
            delivered: list[str] = []
            async with (
                RillClient(server.address, retry=RetryPolicy(max_attempts=1)) as client,
                client.process_orders(ids) as stream,
            ):
                async for result in stream:
                    delivered.append(result.order_id)
                    if len(delivered) == before_cut:
                        broker_link.refuse_new = True
                        broker_link.drop_all()
                    if len(delivered) == before_kill:
                        server.kill()
                        await server.process.wait()
                        break
            notified_before = len(set(message_ids_per_order(notifications.received)) & set(delivered))

    async with running_server(
        "--address",
        "127.0.0.1:0",
        "--http-address",
        "",
        log=tmp_path / "restarted.log",
        env={**env, "RILL_BROKER": broker_url(notifications)},
    ) as restarted:
        started = time.monotonic()
        received = await notifications.wait_until(
            lambda messages: set(message_ids_per_order(messages)) >= set(delivered)
        )
        relay_seconds = time.monotonic() - started
        found_after = await found_orders(restarted.address, delivered)
    per_order = message_ids_per_order(received)
    return Figures(
        delivered=len(delivered),
        notified_before=notified_before,
        found_after=found_after,
        notified_after=sum(order_id in per_order for order_id in delivered),
        relay_seconds=relay_seconds,
        most_message_ids=max(len(per_order.get(order_id, ())) for order_id in delivered),
    )


async def test_kill_9_mid_stream_loses_no_delivered_order_nor_its_notification(
    tmp_path: pathlib.Path, database_url: str, notifications: Notifications
) -> None:
    figures = await crash_and_restart(tmp_path, database_url, notifications)
    assert figures.delivered == BEFORE_KILL
    assert figures.notified_before < figures.delivered, "some notifications waited in the outbox"
    assert figures.found_after == figures.delivered
    assert figures.notified_after == figures.delivered
    assert figures.most_message_ids == 1, "a duplicate is the same message again"
