"""Connect and gRPC-Web items/s on the HTTP edge vs gRPC and SSE, same server process, same run.

One ``python -m server`` (gRPC, the SSE routes and Connect/gRPC-Web in one process and one loop; a
devnull broker, log level WARNING) serves every path. Each round reads ProcessOrders with
``--items`` order ids (default 5,000) once per path, in an order that rotates: gRPC (grpc.aio
client), SSE (``POST /v1/orders:process``, counting ``progress`` events), Connect with binary
protobuf and with JSON (``application/connect+proto`` / ``+json``), and gRPC-Web
(``application/grpc-web+proto``), the last three read by an httpx streaming client that counts
envelopes (5-byte prefix) without decoding them. items/s is the median over ``--rounds``
(default 5), "x gRPC" the median of per-round ratios, "server CPU" the server process's CPU time
per item.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import typing

import grpc
import httpx

from bench import _common, grpc_throughput, sse_throughput

PROCESS = "/orders.v1.OrderService/ProcessOrders"
PATHS = {
    "grpc": "gRPC (grpc.aio client)",
    "sse": "SSE (httpx, POST /v1/orders:process)",
    "connect-proto": "Connect, binary (httpx)",
    "connect-json": "Connect, JSON (httpx)",
    "grpc-web": "gRPC-Web, binary (httpx)",
}
CONTENT_TYPES = {
    "connect-proto": "application/connect+proto",
    "connect-json": "application/connect+json",
    "grpc-web": "application/grpc-web+proto",
}
END_FLAGS = 0x02 | 0x80  # Connect's end-of-stream, gRPC-Web's trailers


def request_body(path: str, items: int) -> bytes:
    ids = [f"order{i}" for i in range(items)]
    if path == "connect-json":
        data = json.dumps({"orderIds": ids}).encode()
    else:
        data = grpc_throughput.request(items)
    return struct.pack(">BI", 0, len(data)) + data


async def read_envelopes(client: httpx.AsyncClient, path: str, body: bytes) -> int:
    """The messages of one stream (envelopes before the final one)."""
    headers = {"content-type": CONTENT_TYPES[path]}
    count, buffer, at = 0, bytearray(), 0
    async with client.stream("POST", PROCESS, content=body, headers=headers) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            buffer += chunk
            while len(buffer) - at >= 5:
                flags, length = struct.unpack_from(">BI", buffer, at)
                if len(buffer) - at < 5 + length:
                    break
                at += 5 + length
                if flags & END_FLAGS:
                    return count
                count += 1
            del buffer[:at]
            at = 0
    return count


async def measure(
    server: _common.ServerProcess, http: str, items: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {key: [] for key in PATHS}
    cpu: dict[str, list[float]] = {key: [] for key in PATHS}
    bodies = {key: request_body(key, items) for key in CONTENT_TYPES}
    async with (
        httpx.AsyncClient(base_url=f"http://{http}", timeout=120) as client,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        method = grpc_throughput.stream_method(channel)
        grpc_body = grpc_throughput.request(items)
        runs: dict[str, typing.Callable[[], typing.Awaitable[int]]] = {
            "grpc": lambda: grpc_throughput.read_all(method, grpc_body),
            "sse": lambda: sse_throughput._sse(client, items),
        }
        for key, body in bodies.items():
            runs[key] = lambda key=key, body=body: read_envelopes(client, key, body)  # type: ignore[misc]  # lambda defaults
        for key, run in runs.items():  # warm-up and check
            if (got := await run()) != items:
                raise AssertionError(f"{key}: {got} items, {items} expected")
        order = list(PATHS)
        for round_ in range(rounds):
            for key in order[round_ % len(order) :] + order[: round_ % len(order)]:
                before = _common.process_cpu([server.pid])
                started = time.perf_counter()
                got = await runs[key]()
                results[key].append(items / (time.perf_counter() - started))
                cpu[key].append((_common.process_cpu([server.pid]) - before) / items)
                if got != items:
                    raise AssertionError(f"{key}: {got} items, {items} expected")
    return {**results, **{f"{key}-cpu": values for key, values in cpu.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.connect_throughput", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument(
        "--items", type=int, default=5_000, help="items per stream (default 5,000; max 10,000)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians (default 5)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="server's loop")
    options = parser.parse_args(argv)
    loop = grpc_throughput.server_loop(options.loop)
    for line in _common.environment((*_common.PACKAGES, "connectrpc")):
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
    print(f"runs:     {options.rounds} rounds of {options.items:,} items per path, rotating; medians")
    print(noise.line)
    print()
    rows = [
        (
            label,
            f"{_common.median(results[key]):,.0f}",
            "1.00" if key == "grpc" else f"{_common.ratio(results[key], results['grpc']):.2f}",
            f"{_common.median(results[f'{key}-cpu']) * 1e6:.1f}",
        )
        for key, label in PATHS.items()
    ]
    print(_common.table(("path", "items/s", "x gRPC", "server CPU µs/item"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
