"""SIGTERM to ``python -m server`` while 20 SSE readers stream and 200 gRPC streams are in flight.

Issue 15: 197 of those 200 ended CANCELLED with 0 items. Every gRPC stream has its first item when
the signal comes; each then gets all its items and ends OK within the grace period, the SSE streams
end (the readers see their connections end), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.server.test_process import REPO, spawn_server

SSE_READERS = 20
STREAMS = 200
ITEMS = 100
CHANNELS = 4


async def test_sigterm_with_20_sse_readers_and_200_grpc_streams_in_flight() -> None:
    server = await spawn_server(
        "--http-address", "127.0.0.1:0", env={"RILL_LOG_LEVEL": "WARNING", "RILL_GRACE_PERIOD": "10"}
    )
    readers: asyncio.subprocess.Process | None = None
    channels = []
    try:
        assert server.stdout is not None
        address = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().split()[2]
        http = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().split()[2]
        readers = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.sse_readers",
            http,
            str(SSE_READERS),
            "10000",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        assert readers.stdout is not None
        assert await asyncio.wait_for(readers.stdout.readline(), 30) == b"started\n"
        channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
        stubs = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
        first_items: asyncio.Queue[int] = asyncio.Queue()

        async def stream(index: int) -> tuple[grpc.StatusCode, int]:
            ids = [f"g{index}-{i}" for i in range(ITEMS)]
            call = stubs[index % CHANNELS].ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
            received = 0
            try:
                async for _ in call:
                    received += 1
                    if received == 1:
                        first_items.put_nowait(index)
            except grpc.aio.AioRpcError as error:
                return error.code(), received
            return await call.code(), received

        streams = [asyncio.create_task(stream(i)) for i in range(STREAMS)]

        async def all_in_flight() -> None:
            for _ in range(STREAMS):
                await first_items.get()

        # Every stream is in flight, with its first item (before server.aio_wakeups, not within 60 s).
        await asyncio.wait_for(all_in_flight(), 60)
        server.send_signal(signal.SIGTERM)
        ends = await asyncio.wait_for(asyncio.gather(*streams), 60)
        assert ends == [(grpc.StatusCode.OK, ITEMS)] * STREAMS
        _, stderr = await asyncio.wait_for(server.communicate(), 60)
        assert server.returncode == 0, stderr.decode()[-2000:]
        await asyncio.wait_for(readers.wait(), 60)  # every SSE connection ended with the server
        assert readers.returncode == 0
    finally:
        for channel in channels:
            await channel.close(None)
        for process in (readers, server):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
