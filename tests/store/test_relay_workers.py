"""`python -m server --workers 2` on the embedded store: both workers write the outbox, one relay (the
SQLite lock holder) publishes, and every delivered order's notification reaches RabbitMQ once."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import signal
import socket

import grpc
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.store.schema import outbox
from server.store.store import Store
from tests.brokers.consumer import Consumer
from tests.client.conftest import cli_env
from tests.server.test_process import spawn_server
from tests.store.outbox_fixtures import (  # noqa: F401 - the *_fixture names are pytest fixtures
    exchange_name_fixture,
    rabbitmq_fixture,
)

CALLS = 10
ORDERS_PER_CALL = 3


def free_port() -> int:
    # Port 0 cannot be shared by the workers: pick a free one first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def process_orders(address: str, call: int) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:  # a fresh connection: either worker
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        ids = [f"call{call}-order{index}" for index in range(ORDERS_PER_CALL)]
        return [
            result.order_id
            async for result in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
        ]


async def test_two_workers_on_one_sqlite_file_notify_every_delivered_order_once(
    tmp_path: pathlib.Path, rabbitmq: str, exchange_name: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {
        **cli_env(),
        "RILL_DATABASE_URL": "",
        "RILL_STATE_DIR": str(tmp_path / "state"),
        "RILL_BROKER": f"{rabbitmq}?exchange={exchange_name}",
        "RILL_OUTBOX__POLL_INTERVAL": "0.2",
    }
    async with Consumer(rabbitmq, exchange_name, "orders.processed") as consumer:
        process = await spawn_server("--address", address, "--workers", "2", env=env)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(60):
                for _ in range(2):
                    assert (await process.stdout.readline()).startswith(b"listening on ")
                delivered = [order for call in range(CALLS) for order in await process_orders(address, call)]
                received = await consumer.wait_for(len(delivered), within=30)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                _, err = await process.communicate()
            assert process.returncode == 0, err.decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        everything = await consumer.everything()

    assert len(delivered) == CALLS * ORDERS_PER_CALL
    assert sorted(each.envelope["payload"]["order_id"] for each in received) == sorted(delivered)
    counts = collections.Counter(each.message_id for each in everything)
    assert set(counts.values()) == {1}, "a notification was published twice"
    url = make_url(f"sqlite+aiosqlite:///{tmp_path / 'state' / 'rill.db'}")
    async with Store(url) as store, store.engine.connect() as connection:
        rows = (await connection.execute(sa.select(outbox.c.message_id, outbox.c.state))).all()
    assert sorted(str(message_id) for message_id, _ in rows) == sorted(each or "" for each in counts)
    assert {state for _, state in rows} == {"published"}
