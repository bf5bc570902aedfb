"""Many concurrent streams on one server process: total msgs/s, time to first message, peak RSS.

``--streams`` (default 1,000) streams of ``--items`` items (default 100) at once against one server
process: the real service (``python -m server``, ProcessOrders with its 3 events per item: 2 domain
events and 1 notification to a devnull broker; HTTP edge off) and, for reference, raw grpc.aio (the
``raw`` server of ``bench._servers``). One client process spreads the streams over ``--channels``
channels (default 10, each its own connection: GRPC_FACTS saw 2,000 streams on one channel end
CANCELLED). Reported per server: msgs/s over the whole run, p50/p99 time to first message (request
sent -> first item), streams that did not end OK, and the server's peak resident set (VmHWM, reset
with ``clear_refs`` before each run) next to its resident set at rest. Rounds alternate the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
import typing

import grpc

from bench import _common, grpc_throughput


@dataclasses.dataclass
class Streamed:
    """What the client side of one run saw."""

    seconds: float
    first: list[float]
    failed: int
    codes: dict[str, int]


@dataclasses.dataclass
class Run:
    seconds: float
    first: list[float]
    failed: int
    peak_kb: int
    rest_kb: int
    codes: dict[str, int]


def open_channels(address: str, channels: int) -> list[grpc.aio.Channel]:
    """``channels`` channels to ``address``, each its own connection."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]


async def warm_up(methods: list[typing.Any]) -> None:
    """One short call on every channel: connected before the clock starts."""
    await asyncio.gather(
        *(grpc_throughput.read_all(method, grpc_throughput.request(2)) for method in methods)
    )


async def run_streams(methods: list[typing.Any], streams: int, items: int) -> Streamed:
    """``streams`` streams of ``items`` items at once, spread over ``methods`` (one per channel)."""
    body = grpc_throughput.request(items)
    first: list[float] = []
    failed = 0
    codes: dict[str, int] = {}

    async def stream(index: int) -> None:
        nonlocal failed
        started = time.perf_counter()
        call = methods[index % len(methods)](body)
        try:
            count = 0
            while (message := await call.read()) is not grpc.aio.EOF:
                if count == 0:
                    first.append(time.perf_counter() - started)
                del message
                count += 1
            if count != items:
                failed += 1
        except grpc.aio.AioRpcError as error:
            failed += 1
            codes[error.code().name] = codes.get(error.code().name, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(stream(index) for index in range(streams)))
    return Streamed(time.perf_counter() - started, first, failed, codes)


async def one_run(server: _common.ServerProcess, streams: int, items: int, channels: int) -> Run:
    opened = open_channels(server.address, channels)
    try:
        methods = [grpc_throughput.stream_method(channel) for channel in opened]
        await warm_up(methods)
        rest_kb = server.status("VmRSS")
        server.reset_peak()
        seen = await run_streams(methods, streams, items)
        return Run(seen.seconds, seen.first, seen.failed, server.status("VmHWM"), rest_kb, seen.codes)
    finally:
        await asyncio.gather(*(channel.close() for channel in opened))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.concurrency", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--streams", type=int, default=1_000, help="concurrent streams (default 1,000)")
    parser.add_argument("--items", type=int, default=100, help="items per stream (default 100)")
    parser.add_argument("--channels", type=int, default=10, help="client channels/connections (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server; medians (default 2)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    options = parser.parse_args(argv)
    loop = grpc_throughput.server_loop(options.loop)
    for line in _common.environment():
        print(line)
    print(f"loops:    servers {loop}, client {_common.loop_name()}")
    specs = {
        "raw": _common.bench_server("raw", "--loop", loop),
        "ours": ["-m", "server", "--address", "127.0.0.1:0", "--http-address", "", "--loop", loop],
    }
    env = {**os.environ, "RILL_BROKER": "devnull", "RILL_LOG_LEVEL": "WARNING"}
    started: dict[str, _common.ServerProcess] = {}
    runs: dict[str, list[Run]] = {key: [] for key in specs}
    try:
        os.environ.update(env)  # inherited by the servers
        started["raw"] = _common.ServerProcess("raw", specs["raw"])
        started["ours"] = _common.ServerProcess("ours", specs["ours"], ready_prefix="listening on ")
        with _common.Noise(lambda: [server.pid for server in started.values()]) as noise:
            for round_ in range(options.rounds):
                order = list(specs) if round_ % 2 == 0 else list(reversed(specs))
                for key in order:
                    runs[key].append(
                        _common.run(one_run(started[key], options.streams, options.items, options.channels))
                    )
                print(f"  round {round_ + 1}/{options.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in started.values():
            server.stop()
    print(
        f"runs:     {options.streams:,} streams x {options.items} items over {options.channels} channels, "
        f"{options.rounds} rounds alternating; medians over rounds"
    )
    print(noise.line)
    print()
    total = options.streams * options.items
    rows = []
    rates = {key: [total / run.seconds for run in values] for key, values in runs.items()}
    for key, values in runs.items():
        label = "raw grpc.aio (async generator)" if key == "raw" else "ours: python -m server, ProcessOrders"
        rows.append(
            (
                label,
                f"{_common.median(rates[key]):,.0f}",
                "1.00" if key == "raw" else f"{_common.ratio(rates[key], rates['raw']):.2f}",
                f"{_common.median(_common.percentile(run.first, 0.5) for run in values) * 1e3:.0f}",
                f"{_common.median(_common.percentile(run.first, 0.99) for run in values) * 1e3:.0f}",
                str(sum(run.failed for run in values))
                + "".join(f" {code}" for code in sorted({code for run in values for code in run.codes})),
                f"{max(run.peak_kb for run in values) / 1024:.0f}",
                f"{_common.median(run.rest_kb for run in values) / 1024:.0f}",
            )
        )
    header = (
        "server",
        "msgs/s",
        "x raw",
        "first p50 ms",
        "first p99 ms",
        "not OK",
        "peak RSS MiB",
        "RSS at rest",
    )
    print(_common.table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
