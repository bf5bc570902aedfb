"""The HTTP edge attacked as in issue 15: figures for docs/reliability.md's "HTTP edge" table.

``python -m server`` in its own process (defaults, 1,024 descriptors), loopback clients here:

- ``disconnect``: a 10,000-id POST read up to its first ``progress``, then closed: items the server
  sent in all (its ``/metrics``), over ``--runs`` runs;
- ``health``: gRPC health ``Check`` (5 s deadline, every 50 ms) idle, then while 4 clients each read
  a 10,000-id SSE stream: how many were answered in time, p50/p99;
- ``body``: a POST announcing 146 MB: time to the 413, bytes sent before it, server peak RSS;
- ``slow``: 500 partial-header and 500 silent connections: how many are still open after the
  header timeout (+2 s); then 1,100 silent connections: whether gRPC and HTTP still answer;
- ``sigterm``: SIGTERM (grace 3 s) while 20 SSE clients read 10,000-id streams and 200 gRPC
  streams of 100 items run (each has its first item): how the gRPC streams end
  (``SSE_READERS=0`` in the environment: the same without the SSE load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import resource
import signal
import sys
import time
import typing

import grpc
import httpx
from grpc_health.v1 import health_pb2

from bench._common import percentile
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.reliability.sse_readers import read_stream
from tests.typed_grpc import health_stub

REPO = pathlib.Path(__file__).resolve().parents[1]
IDS = [f"o{i}" for i in range(10_000)]


class Server:
    """``python -m server`` on free ports, its file-descriptor limit set to ``fds``."""

    def __init__(self, fds: int = 1024, **env: str) -> None:
        self._fds = fds
        self._env = env
        self.grpc = self.http = ""
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        fds = self._fds

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "--address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            cwd=REPO,
            env={**os.environ, "RILL_LOG_LEVEL": "WARNING", **self._env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=limit,
        )
        assert self.process.stdout is not None
        for _ in range(2):
            line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode().strip()
            if line.startswith("listening on "):
                self.grpc = line.removeprefix("listening on ").split()[0]
            elif line.startswith("http on "):
                self.http = line.removeprefix("http on ")
        return self

    def peak_rss_mib(self) -> float:
        assert self.process is not None
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


def _post(address: str, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"POST /v1/orders:process HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


async def _sent_over_http(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("grpc_server_msg_sent_total{") and 'transport="http"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def disconnect(runs: int) -> None:
    async with Server() as server, httpx.AsyncClient(base_url=f"http://{server.http}", timeout=30) as client:
        sent = []
        for _ in range(runs):
            before = await _sent_over_http(client)
            reader, writer = await _open(server.http)
            writer.write(_post(server.http, json.dumps({"order_ids": IDS}).encode()))
            await reader.readuntil(b"event: progress")
            writer.close()
            await asyncio.sleep(1.0)  # the server's counters settle
            sent.append(int(await _sent_over_http(client) - before))
        print(f"disconnect after the first progress event: items sent per run {sent} of {len(IDS)}")


async def _checks(health: typing.Any, count: int) -> tuple[int, list[float]]:
    answered, latencies = 0, []
    for _ in range(count):
        started = time.monotonic()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            answered += 1
            latencies.append((time.monotonic() - started) * 1000)
        await asyncio.sleep(0.05)
    return answered, latencies


async def health(checks: int) -> None:
    async with Server() as server, grpc.aio.insecure_channel(server.grpc) as channel:
        stub = health_stub(channel)
        idle, idle_ms = await _checks(stub, checks)

        async def read() -> int:
            return await read_stream(server.http, len(IDS))

        readers = [asyncio.create_task(read()) for _ in range(4)]
        loaded, loaded_ms = await _checks(stub, checks)
        items = await asyncio.gather(*readers)
    print(
        f"health idle: {idle}/{checks} answered, p50 {percentile(idle_ms, 0.5):.1f} ms, "
        f"p99 {percentile(idle_ms, 0.99):.1f} ms"
    )
    print(
        f"health under 4 SSE readers x 10,000 items: {loaded}/{checks} answered within 5 s, "
        f"p50 {percentile(loaded_ms, 0.5):.1f} ms, p99 {percentile(loaded_ms, 0.99):.1f} ms "
        f"(bytes read per stream {items})"
    )


async def body() -> None:
    async with Server() as server:
        rss = server.peak_rss_mib()
        reader, writer = await _open(server.http)
        started = time.monotonic()
        writer.write(_post(server.http, b"", length=146_000_000))
        answer = asyncio.create_task(reader.readline())  # the status line
        chunk, sent = b"[" * 65536, 0
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 146_000_000:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        try:
            status = (await answer).decode().strip()
        except ConnectionError:
            status = "reset"
        elapsed = time.monotonic() - started
        writer.close()
        print(
            f"146 MB POST: {status!r} after {elapsed * 1000:.0f} ms, {sent / 1e6:.1f} MB sent by then; "
            f"server peak RSS {rss:.0f} -> {server.peak_rss_mib():.0f} MiB"
        )


async def slow() -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit[1], limit[1]))  # the client needs > 1,100
    async with Server() as server:
        partial = [await _open(server.http) for _ in range(500)]
        for _, writer in partial:
            writer.write(b"POST /v1/orders:process HTTP/1.1\r\nhost: ")
        silent = [await _open(server.http) for _ in range(500)]
        started = time.monotonic()
        closed = await asyncio.gather(*(r.read() for r, _ in [*partial, *silent]), return_exceptions=True)
        elapsed = time.monotonic() - started
        timed_out = sum(isinstance(c, bytes) and c.startswith(b"HTTP/1.1 408") for c in closed)
        over_cap = sum(isinstance(c, bytes) and c.startswith(b"HTTP/1.1 503") for c in closed)
        print(
            f"500 partial-header + 500 silent connections: all closed after {elapsed:.1f} s, "
            f"{over_cap} at once with a 503 (over the cap), {timed_out} with a 408; "
            f"server peak RSS {server.peak_rss_mib():.0f} MiB"
        )
        for _, writer in [*partial, *silent]:
            writer.close()

        held = []
        for _ in range(1100):
            held.append(await _open(server.http))
        refused = 0
        for reader, _ in held:
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(reader.read(12), 0.01)
                refused += first.startswith(b"HTTP/1.1 503")
        async with grpc.aio.insecure_channel(server.grpc) as channel:
            try:
                await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                grpc_ok = "answered"
            except grpc.aio.AioRpcError as error:
                grpc_ok = error.code().name
        print(f"1,100 silent connections (1,024 fds): {refused} refused 503; gRPC health {grpc_ok}")
        for _, writer in held:
            writer.close()


async def sigterm() -> None:
    async with Server(RILL_GRACE_PERIOD="3") as server:
        assert server.process is not None

        async def sse() -> str:
            try:
                await read_stream(server.http, len(IDS))
                return "read"
            except OSError as error:
                return type(error).__name__

        started = 0
        all_started = asyncio.Event()

        async def stream(stub: typing.Any, index: int) -> tuple[str, int]:
            nonlocal started
            ids = [f"g{index}-{i}" for i in range(100)]
            items = 0
            try:
                request = orders_pb2.ProcessOrdersRequest(order_ids=ids)
                async for _ in stub.ProcessOrders(request, timeout=60):
                    items += 1
                    if items == 1:
                        started += 1
                        if started == 200:
                            all_started.set()
                return "OK", items
            except grpc.aio.AioRpcError as error:
                return error.code().name, items

        channels = [grpc.aio.insecure_channel(server.grpc) for _ in range(4)]
        try:
            readers = [asyncio.create_task(sse()) for _ in range(int(os.environ.get("SSE_READERS", "20")))]
            await asyncio.sleep(0.5)  # the SSE streams are under way
            stubs = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
            streams = [asyncio.create_task(stream(stubs[i % 4], i)) for i in range(200)]
            # Every gRPC stream has its first item: then SIGTERM (a call not yet taken up by grpc
            # when the server stops is refused, whatever the edge does).
            waited = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_started.wait(), 60)
            print(f"  {started} gRPC streams had their first item after {time.monotonic() - waited:.1f} s")
            server.process.send_signal(signal.SIGTERM)
            ends = await asyncio.gather(*streams)
            await asyncio.gather(*readers)
            code = await asyncio.wait_for(server.process.wait(), 60)
        finally:
            for channel in channels:
                await channel.close()
    codes: dict[str, int] = {}
    for name, _ in ends:
        codes[name] = codes.get(name, 0) + 1
    complete = sum(1 for name, items in ends if name == "OK" and items == 100)
    print(
        f"SIGTERM (grace 3 s) with {len(readers)} SSE readers, 200 gRPC streams of 100 items under way: "
        f"{codes}, {complete} complete; exit {code}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench http_edge", description=__doc__)
    parser.add_argument(
        "--only", choices=["disconnect", "health", "body", "slow", "sigterm"], action="append"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checks", type=int, default=40)
    options = parser.parse_args(argv)
    chosen = options.only or ["disconnect", "health", "body", "slow", "sigterm"]

    async def run() -> None:
        if "disconnect" in chosen:
            await disconnect(options.runs)
        if "health" in chosen:
            await health(options.checks)
        if "body" in chosen:
            await body()
        if "slow" in chosen:
            await slow()
        if "sigterm" in chosen:
            await sigterm()

    asyncio.run(run())
    return 0
