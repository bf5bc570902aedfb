"""gRPC streaming throughput: one client reading N items from raw grpc.aio, our service path, python-cqrs.

Each server runs in its own process (``bench._servers``): raw grpc.aio (the ceiling), ours (mediator +
adapter) with 0 and 2 no-op domain events per item, python-cqrs 5.3.0 with 0 and 2. One client (this
process, one channel per server) reads one stream of ``--items`` items from each in turn; the order
rotates every round; msgs/s is the median over rounds and "x raw" the median of per-round ratios.
"server CPU" is the server process's own CPU time per message (from /proc), a figure that the other
load on the machine disturbs much less than wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
import typing

import grpc

from bench import _common
from protos.orders.v1 import orders_pb2

TARGET_OURS_0 = 0.97  # ours, 0 events: at least this fraction of raw
TARGET_OURS_2 = 0.90  # ours, 2 events: at least this fraction of raw
METHOD = "/orders.v1.OrderService/ProcessOrders"


def request(items: int, prefix: str = "order") -> bytes:
    return orders_pb2.ProcessOrdersRequest(
        order_ids=[f"{prefix}{i}" for i in range(items)]
    ).SerializeToString()


def stream_method(channel: grpc.aio.Channel) -> typing.Any:
    """ProcessOrders on ``channel``, taking a serialized request (so building it is not measured)."""
    return channel.unary_stream(
        METHOD,
        request_serializer=lambda body: body,
        response_deserializer=orders_pb2.OrderProcessedResult.FromString,
    )


async def read_all(method: typing.Any, body: bytes) -> int:
    count = 0
    async for _message in method(body):
        count += 1
    return count


@dataclasses.dataclass
class Path:
    key: str
    label: str
    args: list[str]
    items: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)  # server CPU seconds per message

    @property
    def rates(self) -> list[float]:
        return [self.items / seconds for seconds in self.seconds]


def server_loop(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def paths(items: int, cqrs_events_items: int, loop: str, stall_timeout: float = 0.0) -> list[Path]:
    def spec(kind: str, *extra: str) -> list[str]:
        if kind == "ours" and stall_timeout:
            extra = (*extra, "--stall-timeout", str(stall_timeout))
        return _common.bench_server(kind, "--loop", loop, *extra)

    return [
        Path("raw", "raw grpc.aio (async generator)", spec("raw"), items),
        Path("ours-0", "ours, 0 events", spec("ours", "--events", "0"), items),
        Path("ours-2", "ours, 2 events (strict)", spec("ours", "--events", "2"), items),
        Path("cqrs-0", "python-cqrs 5.3.0, 0 events", spec("cqrs", "--events", "0"), items),
        Path("cqrs-2", "python-cqrs 5.3.0, 2 events", spec("cqrs", "--events", "2"), cqrs_events_items),
    ]


def only(chosen: list[Path], keys: str | None) -> list[Path]:
    """The paths named in ``--only`` (comma-separated keys), raw always included: the ratios need it."""
    if not keys:
        return chosen
    wanted = {"raw", *keys.split(",")}
    return [path for path in chosen if path.key in wanted]


async def measure(
    chosen: list[Path], servers: dict[str, _common.ServerProcess], rounds: int, warm_up: int
) -> None:
    channels = {path.key: grpc.aio.insecure_channel(servers[path.key].address) for path in chosen}
    try:
        methods = {key: stream_method(channel) for key, channel in channels.items()}
        bodies = {path.key: request(path.items) for path in chosen}
        for path in chosen:  # warm-up and check
            if (got := await read_all(methods[path.key], request(warm_up))) != warm_up:
                raise AssertionError(f"{path.key}: {got} items, {warm_up} expected")
        for round_ in range(rounds):
            shift = round_ % len(chosen)
            for path in chosen[shift:] + chosen[:shift]:
                pid = servers[path.key].pid
                gc.collect()
                cpu = _common.process_cpu([pid])
                started = time.perf_counter()
                got = await read_all(methods[path.key], bodies[path.key])
                path.seconds.append(time.perf_counter() - started)
                path.cpu.append((_common.process_cpu([pid]) - cpu) / path.items)
                if got != path.items:
                    raise AssertionError(f"{path.key}: {got} items, {path.items} expected")
            print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for channel in channels.values():
            await channel.close()


def report(chosen: list[Path]) -> tuple[str, list[str]]:
    raw = next(path for path in chosen if path.key == "raw")
    rows = []
    for path in chosen:
        rates = path.rates
        rows.append(
            (
                path.label,
                f"{path.items:,}",
                f"{_common.median(rates):,.0f}",
                f"{min(rates):,.0f}-{max(rates):,.0f}",
                "1.00" if path is raw else f"{_common.ratio(rates, raw.rates):.2f}",
                f"{_common.median(path.cpu) * 1e6:.1f}",
                "1.00" if path is raw else f"{_common.ratio(path.cpu, raw.cpu):.2f}",
            )
        )
    header = ("path", "items", "msgs/s", "rounds min-max", "x raw", "server CPU µs/msg", "CPU x raw")
    targets = []
    for key, target in (("ours-0", TARGET_OURS_0), ("ours-2", TARGET_OURS_2)):
        measured = next((path for path in chosen if path.key == key), None)
        if measured is not None:
            value = _common.ratio(measured.rates, raw.rates)
            targets.append(
                _common.target_line(
                    f"{measured.label}: {value:.2f}x raw msgs/s (target >= {target}x)",
                    round(value, 2) >= target,
                )
            )
    return _common.table(header, rows), targets


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc_throughput", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=50_000, help="items per stream (default 50,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians reported (default 5)")
    parser.add_argument(
        "--cqrs-events-items",
        type=int,
        default=None,
        help="items for python-cqrs with 2 events (default items/5)",
    )
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=0.0,
        help="ours: the adapter's per-write stall timeout, as the service sets it (30); default 0: none",
    )
    parser.add_argument("--client-loop", default="uvloop", choices=("asyncio", "uvloop"))
    parser.add_argument("--only", help="comma-separated path keys (raw, ours-0, ours-2, cqrs-0, cqrs-2)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = parser().parse_args(argv)
    loop = server_loop(options.loop)
    chosen = paths(
        options.items, options.cqrs_events_items or max(options.items // 5, 1), loop, options.stall_timeout
    )
    chosen = only(chosen, options.only)
    for line in _common.environment():
        print(line)
    print(
        f"loops:    servers {loop}, client {_common.loop_name(options.client_loop)}; "
        "one process per server, one client"
    )
    with _common.servers({path.key: path.args for path in chosen}) as servers:
        noise = _common.Noise(lambda: [server.pid for server in servers.values()])
        started = time.perf_counter()
        with noise:
            _common.run(
                measure(chosen, servers, options.rounds, min(2_000, options.items)), options.client_loop
            )
        took = time.perf_counter() - started
    print(
        f"runs:     {options.rounds} rounds interleaved, {took:.0f} s; msgs/s is the median over rounds, "
        "ratios the median of per-round ratios"
    )
    print(noise.line)
    print()
    text, targets = report(chosen)
    print(text)
    print()
    for line in targets:
        print(line)
    return 1 if options.check and any(line.endswith("MISSED") for line in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
