"""Load: N concurrent ProcessOrders streams x M items against one server process; nothing may be lost.

``python -m bench load [--streams 1000] [--items 100] [--channels 20] [--timeout 300]``. The real
service runs in its own process (``bench._rill_server``, loopback only, devnull broker); the streams
are spread over ``--channels`` channels (2,000 streams on one grpc.aio channel ended some CANCELLED:
GRPC_FACTS.md). Checked: every stream got all its items, in order, once, and ended OK; the service's
event handlers recorded every order once (OrderBook) and counted one analytics event per item.
Reported: wall time, msgs/s, p50/p99 time to first message, the server's peak RSS (VmHWM).
The CI-sized version is tests/reliability/test_load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import time

import grpc

from bench._process import RillProcess
from protos.orders.v1 import orders_pb2, orders_pb2_grpc

MAX_STREAMS = 5_000
MAX_ITEMS = 10_000


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run(options: argparse.Namespace) -> int:
    async with RillProcess(*(["--log"] if options.server_log else [])) as server:
        idle = await server.stats()
        channels = [grpc.aio.insecure_channel(server.address) for _ in range(options.channels)]
        first_message: list[float] = []
        failures: list[str] = []
        codes: collections.Counter[str] = collections.Counter()

        async def one_stream(stream: int) -> None:
            stub = orders_pb2_grpc.OrderServiceStub(channels[stream % len(channels)])
            ids = [f"s{stream}-{item}" for item in range(options.items)]
            started = time.perf_counter()
            call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
            received: list[str] = []
            try:
                async for result in call:
                    if not received:
                        first_message.append(time.perf_counter() - started)
                    received.append(result.order_id)
            except grpc.aio.AioRpcError as error:
                failures.append(f"stream {stream}: {error.code().name} after {len(received)} items")
                codes[error.code().name] += 1
                return
            codes["OK"] += 1
            if received != ids:
                failures.append(f"stream {stream}: {len(received)} items, in order: {received == ids}")

        try:
            started = time.perf_counter()
            async with asyncio.timeout(options.timeout):
                await asyncio.gather(*(one_stream(stream) for stream in range(options.streams)))
            wall = time.perf_counter() - started
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
        loaded = await server.stats()
        final = await server.stop()

    total = options.streams * options.items
    print(f"streams:  {options.streams:,} x {options.items:,} items over {options.channels} channels")
    print(f"wall:     {wall:.2f} s, {total / wall:,.0f} msgs/s")
    print(
        f"first message: p50 {statistics.median(first_message) * 1000:.1f} ms, "
        f"p99 {_percentile(first_message, 0.99) * 1000:.1f} ms, max {max(first_message) * 1000:.1f} ms"
    )
    peak, idle_peak = loaded["peak_rss_kib"] / 1024, idle["peak_rss_kib"] / 1024
    print(f"server peak RSS: {peak:.1f} MiB (after start-up: {idle_peak:.1f} MiB)")
    print(
        f"events:   {final['orders_recorded']:,} orders recorded, {final['analytics_events']:,} analytics "
        f"events, for {total:,} items"
    )
    print(f"statuses: {', '.join(f'{code} {count:,}' for code, count in codes.most_common())}")
    lost = failures or final["orders_recorded"] != total or final["analytics_events"] != total
    print(f"check:    {'FAILED: ' + '; '.join(failures[:5]) if lost else 'nothing lost, nothing duplicated'}")
    return 1 if lost else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--server-log", action="store_true", help="the server logs every call (stderr)")
    options = parser.parse_args(argv)
    if not (1 <= options.streams <= MAX_STREAMS and 1 <= options.items <= MAX_ITEMS):
        parser.error(f"1..{MAX_STREAMS} streams of 1..{MAX_ITEMS} items")
    options.channels = max(1, min(options.channels, options.streams))
    return asyncio.run(run(options))


if __name__ == "__main__":
    raise SystemExit(main())
