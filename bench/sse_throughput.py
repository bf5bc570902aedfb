"""SSE items/s through the HTTP edge vs the gRPC path, same server process, same run.

One ``python -m server`` (gRPC and the HTTP/SSE edge in one process and one loop; a devnull broker,
log level WARNING) serves both. Each round reads ProcessOrders with ``--items`` order ids (default
5,000; the service takes at most 10,000 per request) once over gRPC (grpc.aio client) and once as
Server-Sent Events (``POST /v1/orders:process``, httpx streaming client counting ``progress``
events), in an order that alternates; items/s is the median over ``--rounds`` (default 5) and the
ratio the median of per-round ratios. "server CPU" is the server process's CPU time per item.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import typing

import grpc
import httpx

from bench import _common, grpc_throughput


async def _grpc(address: str, items: int) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        return await grpc_throughput.read_all(
            grpc_throughput.stream_method(channel), grpc_throughput.request(items)
        )


async def _sse(client: httpx.AsyncClient, items: int) -> int:
    body = {"order_ids": [f"order{i}" for i in range(items)]}
    count = 0
    async with client.stream("POST", "/v1/orders:process", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line == "event: progress":
                count += 1
    return count


async def measure(
    server: _common.ServerProcess, http: str, items: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"grpc": [], "sse": []}
    cpu: dict[str, list[float]] = {"grpc": [], "sse": []}
    async with httpx.AsyncClient(base_url=f"http://{http}", timeout=120) as client:
        runs: dict[str, typing.Callable[[], typing.Awaitable[int]]] = {
            "grpc": lambda: _grpc(server.address, items),
            "sse": lambda: _sse(client, items),
        }
        for run in runs.values():  # warm-up and check
            if (got := await run()) != items:
                raise AssertionError(f"{got} items, {items} expected")
        for round_ in range(rounds):
            for key in ("grpc", "sse") if round_ % 2 == 0 else ("sse", "grpc"):
                before = _common.process_cpu([server.pid])
                started = time.perf_counter()
                got = await runs[key]()
                results[key].append(items / (time.perf_counter() - started))
                cpu[key].append((_common.process_cpu([server.pid]) - before) / items)
                if got != items:
                    raise AssertionError(f"{key}: {got} items, {items} expected")
    return {**results, "grpc-cpu": cpu["grpc"], "sse-cpu": cpu["sse"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sse_throughput", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument(
        "--items", type=int, default=5_000, help="items per stream (default 5,000; max 10,000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians (default 5)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="server's loop")
    options = parser.parse_args(argv)
    loop = grpc_throughput.server_loop(options.loop)
    for line in _common.environment():
        print(line)
    print(f"loops:    server {loop} (gRPC and HTTP in one loop), client {_common.loop_name()}")
    os.environ.update({"RILL_BROKER": "devnull", "RILL_LOG_LEVEL": "WARNING"})
    server = _common.ServerProcess(
        "service",
        ["-m", "server", "--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--loop", loop],
        ready_prefix="listening on ",
    )
    try:
        assert server.process.stdout is not None
        http = server.process.stdout.readline().removeprefix("http on ").strip()
        with _common.Noise(lambda: [server.pid]) as noise:
            results = _common.run(measure(server, http, options.items, options.rounds))
    finally:
        server.stop()
    print(f"runs:     {options.rounds} rounds of {options.items:,} items per path, alternating; medians")
    print(noise.line)
    print()
    rows = [
        (
            label,
            f"{_common.median(results[key]):,.0f}",
            "1.00" if key == "grpc" else f"{_common.ratio(results['sse'], results['grpc']):.2f}",
            f"{_common.median(results[f'{key}-cpu']) * 1e6:.1f}",
        )
        for key, label in (
            ("grpc", "gRPC (grpc.aio client)"),
            ("sse", "SSE (httpx, POST /v1/orders:process)"),
        )
    ]
    print(_common.table(("path", "items/s", "x gRPC", "server CPU µs/item"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
