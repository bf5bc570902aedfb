"""SIGTERM with 50 streams in flight, against ``python -m server`` as a process.

Health turns NOT_SERVING first; the 25 streams whose clients keep reading finish within the grace
period and end OK with every item; the 25 whose clients stopped reading are ended UNAVAILABLE when
the grace period is over; the process drains and exits 0. That the events of every delivered item
are handled before the exit is proven from outside, on RabbitMQ, by
``tests/brokers/test_event_promises.py`` (200 streams, strict and overlapped).
"""

from __future__ import annotations

import asyncio
import pathlib
import signal

import grpc
import pytest
from grpc_health.v1 import health_pb2

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.server.test_process import start_server
from tests.typed_grpc import health_stub, read, read_or_none

FINISHING = 25
STUCK = 25
FINISHING_ITEMS = 40  # 1,000 items in all: well within the grace period, even on a busy machine
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]  # a 64 KiB window: a client that stops reading stalls


async def test_sigterm_with_50_streams_in_flight(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "rill.toml"
    config.write_text("grace_period = 3.0\n")
    server = await start_server("--config", str(config))
    channel = grpc.aio.insecure_channel(server.address)
    stuck_channels = [grpc.aio.insecure_channel(server.address, options=SMALL_WINDOW) for _ in range(STUCK)]
    try:
        watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await read(watch)).status == health_pb2.HealthCheckResponse.SERVING
        go = asyncio.Event()
        in_flight: list[int] = []
        all_in_flight = asyncio.Event()

        async def finishing(stream: int) -> tuple[list[str], grpc.StatusCode]:
            ids = [f"f{stream}-{i}" for i in range(FINISHING_ITEMS)]
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            received = [(await read(call)).order_id]
            in_flight.append(stream)
            if len(in_flight) == FINISHING:
                all_in_flight.set()
            await go.wait()
            while (result := await read_or_none(call)) is not None:
                received.append(result.order_id)
            return received, await call.code()

        stuck_calls = []
        for stream, stuck_channel in enumerate(stuck_channels):
            ids = [f"s{stream}-{i}" for i in range(10_000)]
            call = orders_pb2_grpc.OrderServiceStub(stuck_channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            assert (await read(call)).order_id == f"s{stream}-0"
            stuck_calls.append(call)
        readers = [asyncio.create_task(finishing(stream)) for stream in range(FINISHING)]
        await all_in_flight.wait()
        server.process.send_signal(signal.SIGTERM)
        assert (await read(watch)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        go.set()
        for stream, (received, code) in enumerate(await asyncio.gather(*readers)):
            assert code == grpc.StatusCode.OK
            assert received == [f"f{stream}-{i}" for i in range(FINISHING_ITEMS)]

        _, stderr = await asyncio.wait_for(server.process.communicate(), timeout=60)
        assert server.process.returncode == 0, stderr.decode()
        for call in stuck_calls:  # only now does the client read on: the server is gone
            count = 1
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                while await call.read() is not grpc.aio.EOF:
                    count += 1
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert count < 10_000
    finally:
        await asyncio.gather(channel.close(), *(c.close() for c in stuck_channels))
        if server.process.returncode is None:
            server.process.kill()
            await server.process.communicate()
