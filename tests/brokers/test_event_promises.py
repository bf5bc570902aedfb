"""The service's event promises under load, with the machine's real RabbitMQ as the broker.

Publishing a notification really suspends (a network round trip with publisher confirms), so with
many streams the service's bound on event-handler runs is saturated and runs queue for slots:

- strict delivery: an item reaches the client only after its events were handled, so ``GetOrder``
  of every received item answers (it reads what the ``OrderProcessedEvent`` handler recorded);
- SIGTERM with 200 streams in flight against ``python -m server``: every item a client received has
  its notification on a queue bound to the exchange (duplicates only under the same ``message_id``),
  in strict and in overlapped delivery, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import signal
import sys

import grpc
import pytest

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import Settings, create_server
from tests.brokers.consumer import Consumer

pytestmark = pytest.mark.timeout(120)

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
async def orders_consumer(rabbitmq: str, exchange_name: str) -> collections.abc.AsyncIterator[Consumer]:
    async with Consumer(rabbitmq, exchange_name, "orders.processed") as consumer:
        yield consumer


def order_id_of(envelope: dict[str, object]) -> str:
    payload = envelope["payload"]
    assert isinstance(payload, dict)
    return str(payload["order_id"])


async def test_strict_every_received_item_is_found_while_the_bound_is_saturated(
    server_settings: Settings, rabbitmq: str, exchange_name: str, orders_consumer: Consumer
) -> None:
    streams, items = 100, 10
    settings = server_settings.model_copy(update={"broker": f"{rabbitmq}?exchange={exchange_name}"})
    server = create_server(settings)
    await server.start()
    not_found: list[str] = []
    received = 0
    try:
        stream_channels = [grpc.aio.insecure_channel(server.address) for _ in range(4)]
        # A connection of its own: channels to one address share a connection, whose stream limit
        # (limits.max_concurrent_streams) the 100 streams fill while each waits for its lookup.
        lookups = grpc.aio.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        get_order = orders_pb2_grpc.OrderServiceStub(lookups).GetOrder

        async def stream(index: int) -> None:
            nonlocal received
            stub = orders_pb2_grpc.OrderServiceStub(stream_channels[index % 4])
            ids = [f"o{index}-{n}" for n in range(items)]
            async for result in stub.ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids), timeout=60
            ):
                received += 1
                try:
                    await get_order(orders_pb2.GetOrderRequest(order_id=result.order_id), timeout=30)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    not_found.append(result.order_id)

        await asyncio.gather(*(stream(index) for index in range(streams)))
        await asyncio.gather(lookups.close(), *(channel.close() for channel in stream_channels))
        orders = server.mediators["orders"]
        peak, ceiling = orders.peak_event_handlers_running, orders.max_concurrent_event_handlers
    finally:
        await server.stop(grace=0)

    assert received == streams * items
    assert not_found == [], f"{len(not_found)} of {received} received orders were not recorded yet"
    assert peak == ceiling, "the bound was reached: runs queued for slots"


async def start_server_process(
    tmp_path: pathlib.Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, str, pathlib.Path]:
    """``python -m server`` on a free port; its log goes to a file (a pipe could fill and block it)."""
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "--address",
            "127.0.0.1:0",
            "--http-address",
            "",
            cwd=REPO,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    if not line.startswith("listening on "):
        process.kill()
        await process.wait()
        pytest.fail(f"server did not start: {line!r} {log_path.read_text()}")
    return process, line.removeprefix("listening on ").strip(), log_path


@pytest.mark.parametrize("delivery", ["strict", "overlapped"])
async def test_sigterm_with_200_streams_in_flight_notifies_every_received_item(
    tmp_path: pathlib.Path, rabbitmq: str, exchange_name: str, orders_consumer: Consumer, delivery: str
) -> None:
    streams, items = 200, 500
    process, address, log_path = await start_server_process(
        tmp_path,
        {
            "RILL_BROKER": f"{rabbitmq}?exchange={exchange_name}",
            "RILL_ORDERS__EVENT_DELIVERY": delivery,
            "RILL_GRACE_PERIOD": "0.5",
            "RILL_LOG_FORMAT": "text",
        },
    )
    received: list[str] = []
    codes: collections.Counter[grpc.StatusCode] = collections.Counter()
    every_stream_started = asyncio.Event()
    started = 0
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    try:

        async def stream(index: int) -> None:
            nonlocal started
            stub = orders_pb2_grpc.OrderServiceStub(channels[index % 8])
            ids = [f"s{index}-{n}" for n in range(items)]
            call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids), timeout=60)
            first = True
            try:
                async for result in call:
                    received.append(result.order_id)
                    if first:
                        first = False
                        started += 1
                        if started == streams:
                            every_stream_started.set()
                codes[grpc.StatusCode.OK] += 1
            except grpc.aio.AioRpcError as error:
                codes[error.code()] += 1

        readers = asyncio.gather(*(stream(index) for index in range(streams)))
        async with asyncio.timeout(60):  # a safety net against a hang, not a timing assertion
            await every_stream_started.wait()
            process.send_signal(signal.SIGTERM)
            await readers
            assert await process.wait() == 0, log_path.read_text()[-3000:]
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert len(received) < streams * items, "SIGTERM came while streams were in flight"
    assert codes[grpc.StatusCode.OK] < streams
    notified: dict[str, set[str | None]] = collections.defaultdict(set)
    for message in await orders_consumer.everything():
        notified[order_id_of(message.envelope)].add(message.message_id)
    missing = [order_id for order_id in received if order_id not in notified]
    assert missing == [], f"{len(missing)} of {len(received)} received items were never notified"
    assert all(len(ids) == 1 for ids in notified.values()), "duplicates only under the same message_id"
    log = log_path.read_text()
    assert "never started" not in log
    assert "was cancelled" not in log
