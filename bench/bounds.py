"""Issue 15's attacks on `python -m server` with its defaults, and with the bounds off: RSS and outcome.

``python -m bench bounds [--streams N] [--connections C] [--wait S]``. Each scenario starts its own
server process (defaults: memory broker, HTTP edge off) and reads its RSS from /proc:

- ``no-request``: C connections open N/C streams each (raw HTTP/2 HEADERS, never their message):
  how many the server refused at once (RST_STREAM), how many it ended (and with what), RSS.
- ``same-ids``: 10 ProcessOrders calls with the same 10,000 ids (the memory broker, the OrderBook).
- ``missing-files``: 100 ProcessFiles calls of 1,000 distinct missing ids (the FileLedger).

"off" runs with ``RILL_LIMITS__MAX_CONCURRENT_STREAMS=off``, ``…MAX_CONCURRENT_RPCS=off``,
``…REQUEST_TIMEOUT=off`` and a 10**9 ``orders_kept``/``files_kept``: the server before issue 15,
except for the memory broker, whose bound has no setting (it is the embedded default's only).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import time
import typing

import grpc

from bench._process import REPO
from protos.files.v1 import files_pb2, files_pb2_grpc
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.reliability.raw_h2 import RawH2

OFF = {
    "RILL_LIMITS__MAX_CONCURRENT_STREAMS": "off",
    "RILL_LIMITS__MAX_CONCURRENT_RPCS": "off",
    "RILL_LIMITS__REQUEST_TIMEOUT": "off",
    "RILL_LIMITS__ORDERS_KEPT": str(10**9),
    "RILL_LIMITS__FILES_KEPT": str(10**9),
}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""

    async def __aenter__(self) -> Server:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "--address",
            "127.0.0.1:0",
            "--http-address",
            "",
            cwd=REPO,
            env={**os.environ, "RILL_LOG_LEVEL": "ERROR", **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode()
        self.address = line.removeprefix("listening on ").split()[0]
        return self

    @property
    def rss(self) -> float:
        assert self.process is not None
        return rss_mib(self.process.pid)

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def no_request(server: Server, streams: int, connections: int, wait: float) -> str:
    before = server.rss
    started = time.monotonic()
    raws = [await RawH2.connect(server.address) for _ in range(connections)]
    per = streams // connections
    ids = [[raw.open_stream("/orders.v1.OrderService/ProcessOrders") for _ in range(per)] for raw in raws]
    for raw in raws:
        await raw.flush()
    outcome: collections.Counter[str] = collections.Counter()

    async def read(raw: RawH2, mine: list[int]) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):  # what ended by then is counted
            await raw.read_until(lambda r: set(mine) <= set(r.ended()), timeout=wait)

    await asyncio.gather(*(read(raw, mine) for raw, mine in zip(raws, ids, strict=True)))
    elapsed = time.monotonic() - started
    peak = server.rss
    for raw, mine in zip(raws, ids, strict=True):
        ended = raw.ended()
        for stream in mine:
            status = raw.grpc_status(stream)
            if status is not None:
                outcome[f"status {status[0]}"] += 1
            elif stream in ended:
                outcome["reset"] += 1
            else:
                outcome["open"] += 1
        await raw.aclose()
    return (
        f"{streams:,} streams on {connections} connections: {dict(outcome)} after {elapsed:.1f} s; "
        f"RSS {before:.0f} -> {peak:.0f} MiB"
    )


async def same_ids(server: Server) -> str:
    before = server.rss
    ids = [f"order-{index}" for index in range(10_000)]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        for _ in range(10):
            async for _ in stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids)):
                pass
    return f"10 calls x the same 10,000 ids: RSS {before:.0f} -> {server.rss:.0f} MiB"


async def missing_files(server: Server) -> str:
    before = server.rss
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = files_pb2_grpc.FileServiceStub(channel)
        for call in range(100):
            ids = [f"missing-{call}-{index}-{'x' * 200}" for index in range(1_000)]
            async for _ in stub.ProcessFiles(files_pb2.ProcessFilesRequest(file_ids=ids)):
                pass
    return f"100 calls x 1,000 distinct missing file ids: RSS {before:.0f} -> {server.rss:.0f} MiB"


async def run(options: argparse.Namespace) -> None:
    scenarios: list[tuple[str, typing.Callable[[Server], typing.Awaitable[str]]]] = [
        ("no-request", lambda s: no_request(s, options.streams, options.connections, options.wait)),
        ("same-ids", same_ids),
        ("missing-files", missing_files),
    ]
    for name, scenario in scenarios:
        for label, env in (("defaults", {}), ("off", OFF)):
            async with Server(env) as server:
                print(f"{name:14} {label:9} {await scenario(server)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench bounds", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--wait", type=float, default=40.0, help="seconds to wait for the streams to end")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
