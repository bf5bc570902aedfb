"""The service as users run it: ``python -m server`` vs a hand-written servicer, python-cqrs, raw grpc.aio.

Four servers, each its own process, all on the same event loop (uvloop unless ``--loop asyncio``):

- ``service``: ``python -m server`` with its defaults (memory broker, metrics, INFO call logs, stall
  watch, admission; every ``RILL_*`` variable of the environment removed), on a free port, its HTTP
  edge on another free port;
- ``handwritten``: the demo's ProcessOrders written by hand (``bench/handwritten_servicer.py``): the
  same work per order, no mediator; the service's grpc options;
- ``cqrs``: the same work through python-cqrs 5.3.0 (``bench/cqrs_servicer.py``); the service's grpc
  options;
- ``raw``: raw grpc.aio building the result message and nothing else (``bench._servers raw``).

Three measurements, each in interleaved rounds (the order rotates every round): one stream of
``--items`` items read by this process (``grpc_throughput``'s driver; python-cqrs streams a fifth as
many); time to first message of sequential calls of 10 items (``first_message``'s driver); and
``--streams`` streams x ``--stream-items`` items over ``--channels`` channels at once, from
``--clients`` client processes (``concurrency``'s driver in each), started before the clock and told
"go" together. Reported per server: medians over rounds of msgs/s, server CPU per message (its
process's utime + stime), first-message p50/p99, the peak resident set (VmHWM, reset before each
measurement), and each figure's ratio to the hand-written servicer (the median of per-round ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from bench import _common, concurrency, first_message, grpc_throughput

TARGET_THROUGHPUT = 0.9  # service: at least this fraction of the hand-written servicer's msgs/s
TARGET_FIRST_P99 = 1.2  # service: first-message p99 at most this many times the hand-written one's
TARGET_OVER_CQRS = 3.0  # service: at least this many times python-cqrs's msgs/s

LABELS = {
    "service": "python -m server (defaults)",
    "handwritten": "hand-written grpc.aio servicer",
    "cqrs": "python-cqrs 5.3.0 behind grpc.aio",
    "raw": "raw grpc.aio (result only)",
}


def has_store() -> bool:
    """Whether ``python -m server``'s default keeps the demo's state in a store (SQLite)."""
    return importlib.util.find_spec("server.store.store") is not None


def specs(loop: str, state_dir: pathlib.Path | None = None) -> dict[str, tuple[list[str], str]]:
    """Each server's arguments and the line it prints once it listens. With ``state_dir`` the
    hand-written servicer makes the service's store calls, in its own SQLite file under it."""
    service = ["-m", "server", "--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--loop", loop]
    hand = _common.bench_server("handwritten", "--loop", loop, "--service-options")
    if state_dir is not None:
        hand += ["--store", "--state-dir", str(state_dir / "handwritten")]
    return {
        "service": (service, "listening on "),
        "handwritten": (hand, "ready "),
        "cqrs": (_common.bench_server("cqrs-orders", "--loop", loop, "--service-options"), "ready "),
        "raw": (_common.bench_server("raw", "--loop", loop), "ready "),
    }


# -- 1,000 streams from client processes ------------------------------------------------------------
async def _client(address: str, streams: int, items: int, channels: int) -> None:
    opened = concurrency.open_channels(address, channels)
    methods = [grpc_throughput.stream_method(channel) for channel in opened]
    await concurrency.warm_up(methods)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    seen = await concurrency.run_streams(methods, streams, items)
    print(json.dumps(dataclasses.asdict(seen)), flush=True)
    await asyncio.gather(*(channel.close() for channel in opened))


@dataclasses.dataclass
class Many:
    rate: float
    cpu_us: float  # server CPU per message
    first: list[float]
    failed: int
    codes: dict[str, int]
    peak_kb: int


def many_streams(server: _common.ServerProcess, options: argparse.Namespace) -> Many:
    clients = options.clients
    command = [sys.executable, "-m", "bench.service", "--client", server.address]
    per_client = [
        options.streams // clients + (index < options.streams % clients) for index in range(clients)
    ]
    channels = [max(1, options.channels // clients) for _ in range(clients)]
    procs = [
        subprocess.Popen(
            [
                *command,
                "--streams",
                str(count),
                "--stream-items",
                str(options.stream_items),
                "--channels",
                str(channels[index]),
            ],
            cwd=_common.REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, count in enumerate(per_client)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a client of {server.name} did not start")
        server.reset_peak()
        cpu = _common.process_cpu([server.pid])
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        seen = []
        for proc in procs:
            assert proc.stdout is not None
            seen.append(concurrency.Streamed(**json.loads(proc.stdout.readline())))
        seconds = time.perf_counter() - started
        cpu = _common.process_cpu([server.pid]) - cpu
    finally:
        for proc in procs:
            proc.communicate(timeout=60)
    total = options.streams * options.stream_items
    codes: dict[str, int] = {}
    for each in seen:
        for code, count in each.codes.items():
            codes[code] = codes.get(code, 0) + count
    return Many(
        total / seconds,
        cpu / total * 1e6,
        [value for each in seen for value in each.first],
        sum(each.failed for each in seen),
        codes,
        server.status("VmHWM"),
    )


# -- the report -------------------------------------------------------------------------------------
def _ratio(values: dict[str, list[float]], key: str, base: str = "handwritten") -> str:
    return "1.00" if key == base else f"{_common.ratio(values[key], values[base]):.2f}"


def one_stream_table(
    paths: list[grpc_throughput.Path], peaks: dict[str, int], first: list[dict[str, list[float]]]
) -> str:
    rates = {path.key: path.rates for path in paths}
    cpu = {path.key: path.cpu for path in paths}
    p50 = {key: [_common.percentile(round_[key], 0.5) for round_ in first] for key in rates}
    p99 = {key: [_common.percentile(round_[key], 0.99) for round_ in first] for key in rates}
    rows = [
        (
            LABELS[key],
            f"{_common.median(rates[key]):,.0f}",
            _ratio(rates, key),
            f"{_common.median(cpu[key]) * 1e6:.1f}",
            f"{_common.median(p50[key]) * 1e3:.2f}",
            f"{_common.median(p99[key]) * 1e3:.2f}",
            _ratio(p99, key),
            f"{peaks[key] / 1024:.0f}",
        )
        for key in rates
    ]
    header = (
        "1 stream",
        "msgs/s",
        "x hand",
        "CPU µs/msg",
        "first p50 ms",
        "p99 ms",
        "x hand",
        "peak RSS MiB",
    )
    return _common.table(header, rows)


def many_table(runs: dict[str, list[Many]]) -> str:
    rates = {key: [run.rate for run in values] for key, values in runs.items()}
    p50 = {key: [_common.percentile(run.first, 0.5) for run in values] for key, values in runs.items()}
    p99 = {key: [_common.percentile(run.first, 0.99) for run in values] for key, values in runs.items()}
    rows = [
        (
            LABELS[key],
            f"{_common.median(rates[key]):,.0f}",
            f"{min(rates[key]):,.0f}-{max(rates[key]):,.0f}",
            _ratio(rates, key),
            f"{_common.median(run.cpu_us for run in values):.1f}",
            f"{_common.median(p50[key]) * 1e3:,.0f}",
            f"{_common.median(p99[key]) * 1e3:,.0f}",
            _ratio(p99, key),
            f"{max(run.peak_kb for run in values) / 1024:.0f}",
            str(sum(run.failed for run in values))
            + "".join(f" {code}" for code in sorted({code for run in values for code in run.codes})),
        )
        for key, values in runs.items()
    ]
    header = (
        "many streams",
        "msgs/s",
        "rounds min-max",
        "x hand",
        "CPU µs/msg",
        "first p50 ms",
        "p99 ms",
        "x hand",
        "peak RSS MiB",
        "not OK",
    )
    return _common.table(header, rows)


def targets(
    paths: list[grpc_throughput.Path], first: list[dict[str, list[float]]], runs: dict[str, list[Many]]
) -> list[str]:
    one = {path.key: path.rates for path in paths}
    many = {key: [run.rate for run in values] for key, values in runs.items()}
    one_p99 = {key: [_common.percentile(round_[key], 0.99) for round_ in first] for key in one}
    many_p99 = {key: [_common.percentile(run.first, 0.99) for run in values] for key, values in runs.items()}
    lines = []
    for scope, rates, p99 in (("1 stream", one, one_p99), ("many streams", many, many_p99)):
        if "service" not in rates or "handwritten" not in rates:
            continue
        value = _common.ratio(rates["service"], rates["handwritten"])
        lines.append(
            _common.target_line(
                f"{scope}: service {value:.2f}x the hand-written msgs/s (>= {TARGET_THROUGHPUT}x)",
                round(value, 2) >= TARGET_THROUGHPUT,
            )
        )
        value = _common.ratio(p99["service"], p99["handwritten"])
        lines.append(
            _common.target_line(
                f"{scope}: service first-message p99 {value:.2f}x the hand-written (<= {TARGET_FIRST_P99}x)",
                round(value, 2) <= TARGET_FIRST_P99,
            )
        )
        if "cqrs" in rates:
            value = _common.ratio(rates["service"], rates["cqrs"])
            lines.append(
                _common.target_line(
                    f"{scope}: service {value:.2f}x python-cqrs's msgs/s (>= {TARGET_OVER_CQRS}x)",
                    round(value, 2) >= TARGET_OVER_CQRS,
                )
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument(
        "--items",
        type=int,
        default=10_000,
        help="1 stream: items (default 10,000, the most one request may ask for)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="1 stream and first message: rounds (default 5)"
    )
    parser.add_argument("--calls", type=int, default=200, help="first message: calls per round (default 200)")
    parser.add_argument("--streams", type=int, default=1_000, help="many streams: streams (default 1,000)")
    parser.add_argument(
        "--stream-items", type=int, default=100, help="many streams: items each (default 100)"
    )
    parser.add_argument(
        "--channels", type=int, default=10, help="many streams: connections in all (default 10)"
    )
    parser.add_argument("--clients", type=int, default=2, help="many streams: client processes (default 2)")
    parser.add_argument("--many-rounds", type=int, default=3, help="many streams: rounds (default 3)")
    parser.add_argument("--only", help="comma-separated servers (service, handwritten, cqrs, raw)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: one, first, many")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="the demo's state in memory (RILL_DATABASE_URL=memory; the hand-written servicer likewise)",
    )
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.client:
        _common.run(_client(options.client, options.streams, options.stream_items, options.channels))
        return 0
    with tempfile.TemporaryDirectory(prefix="rill-bench-state-") as state:
        return _main(options, None if options.memory or not has_store() else pathlib.Path(state))


def _main(options: argparse.Namespace, state_dir: pathlib.Path | None) -> int:
    loop = grpc_throughput.server_loop(options.loop)
    chosen = specs(loop, state_dir)
    if options.only:
        chosen = {
            key: value for key, value in chosen.items() if key in {"handwritten", *options.only.split(",")}
        }
    skip = set(options.skip.split(",")) - {""}
    for line in _common.environment():
        print(line)
    print(f"loops:    servers {loop}, clients {_common.loop_name()}")
    env = {name: value for name, value in os.environ.items() if not name.startswith("RILL_")}
    service_env = dict(env)
    if state_dir is not None:  # the default store, in a directory of its own for this run
        service_env["RILL_STATE_DIR"] = str(state_dir / "service")
        print(
            f"state:    SQLite files in {state_dir} (the service's default store; hand-written: same calls)"
        )
    elif has_store():
        service_env["RILL_DATABASE_URL"] = "memory"
        print("state:    in memory (RILL_DATABASE_URL=memory; hand-written: the OrderBook)")
    started: dict[str, _common.ServerProcess] = {}
    paths = [
        grpc_throughput.Path(
            key, LABELS[key], args, options.items if key != "cqrs" else max(1, options.items // 5)
        )
        for key, (args, _) in chosen.items()
    ]
    peaks: dict[str, int] = {}
    first: list[dict[str, list[float]]] = []
    runs: dict[str, list[Many]] = {key: [] for key in chosen}
    clock = time.perf_counter()
    try:
        for key, (args, ready) in chosen.items():
            started[key] = _common.ServerProcess(
                key, args, ready_prefix=ready, env=service_env if key == "service" else env
            )
        with _common.Noise(lambda: [server.pid for server in started.values()]) as noise:
            if "one" not in skip:
                for server in started.values():
                    server.reset_peak()
                _common.run(
                    grpc_throughput.measure(paths, started, options.rounds, min(2_000, options.items))
                )
                peaks = {key: server.status("VmHWM") for key, server in started.items()}
            if "first" not in skip:
                first = _common.run(first_message.measure(started, options.calls, 10, options.rounds))
            if "many" not in skip:
                keys = list(chosen)
                for round_ in range(options.many_rounds):
                    shift = round_ % len(keys)
                    for key in keys[shift:] + keys[:shift]:
                        runs[key].append(many_streams(started[key], options))
                    print(
                        f"  many streams: round {round_ + 1}/{options.many_rounds} done",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for server in started.values():
            server.stop()
    print(
        f"runs:     1 stream: {options.rounds} rounds of {options.items:,} items (python-cqrs "
        f"{max(1, options.items // 5):,}); first message: {options.rounds} rounds of {options.calls} calls "
        f"of 10 items; many streams: {options.many_rounds} rounds of {options.streams:,} x "
        f"{options.stream_items} items over {options.channels} channels from {options.clients} client "
        f"processes; {time.perf_counter() - clock:.0f} s; medians over rounds, ratios the median of "
        "per-round ratios"
    )
    print(noise.line)
    print()
    if "one" not in skip and "first" not in skip:
        print(one_stream_table(paths, peaks, first))
        print()
    if "many" not in skip:
        print(many_table(runs))
        print()
    if "one" not in skip and "first" not in skip and "many" not in skip:
        for line in targets(paths, first, runs):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
