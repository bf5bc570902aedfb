"""Time to first message: request sent -> first item received, raw grpc.aio vs ours vs python-cqrs.

Same servers as ``grpc_throughput`` (one process each). Each call asks for ``--items`` items (default
10) on a warm channel; the clock stops at the first item, then the rest is read. Calls go to the
servers in turn (call i to every server before call i+1, the order rotating), so machine noise hits
them alike. ``--rounds`` rounds (default 5) of ``--calls`` calls (default 200) per server: "x raw" is
the median over rounds of (this server's median / raw's median) in that round; the median and p90
columns are over every call. One round's ratio moves by +-5 % on this machine, hence the rounds.
"""

from __future__ import annotations

import argparse
import sys
import time

import grpc

from bench import _common, grpc_throughput

TARGET = 1.1  # ours: at most this many times raw's median time to first message


async def measure(
    servers: dict[str, _common.ServerProcess], calls: int, items: int, rounds: int = 1
) -> list[dict[str, list[float]]]:
    """Seconds to the first item of every call, per round and server."""
    channels = {key: grpc.aio.insecure_channel(server.address) for key, server in servers.items()}
    try:
        methods = {key: grpc_throughput.stream_method(channel) for key, channel in channels.items()}
        body = grpc_throughput.request(items)
        for method in methods.values():  # connect and warm up
            for _ in range(20):
                await grpc_throughput.read_all(method, body)
        keys = list(methods)
        measured: list[dict[str, list[float]]] = []
        for _ in range(rounds):
            seconds: dict[str, list[float]] = {key: [] for key in methods}
            for index in range(calls):
                shift = index % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    started = time.perf_counter()
                    call = methods[key](body)
                    first = await call.read()
                    seconds[key].append(time.perf_counter() - started)
                    assert first is not grpc.aio.EOF
                    count = 1
                    while await call.read() is not grpc.aio.EOF:
                        count += 1
                    assert count == items, (key, count)
            measured.append(seconds)
        return measured
    finally:
        for channel in channels.values():
            await channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_message", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per server and round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--items", type=int, default=10, help="items per call (default 10)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    options = parser.parse_args(argv)
    loop = grpc_throughput.server_loop(options.loop)
    paths = {
        path.key: path
        for path in grpc_throughput.paths(options.items, options.items, loop)
        if path.key in ("raw", "ours-0", "ours-2", "cqrs-0", "cqrs-2")
    }
    for line in _common.environment():
        print(line)
    print(f"loops:    servers {loop}, client {_common.loop_name()}")
    with (
        _common.servers({key: path.args for key, path in paths.items()}) as servers,
        _common.Noise(lambda: [server.pid for server in servers.values()]) as noise,
    ):
        measured = _common.run(measure(servers, options.calls, options.items, options.rounds))
    print(
        f"runs:     {options.rounds} rounds of {options.calls} calls per server of {options.items} items, "
        "interleaved"
    )
    print(noise.line)
    print()

    def ratios(key: str) -> list[float]:
        return [_common.median(round_[key]) / _common.median(round_["raw"]) for round_ in measured]

    rows = []
    for key in paths:
        every = [value for round_ in measured for value in round_[key]]
        per_round = ratios(key)
        rows.append(
            (
                paths[key].label,
                f"{_common.median(every) * 1e3:.3f}",
                f"{_common.percentile(every, 0.9) * 1e3:.3f}",
                f"{_common.median(per_round):.3f}",
                f"{min(per_round):.2f}-{max(per_round):.2f}",
            )
        )
    print(_common.table(("path", "median ms", "p90 ms", "x raw", "rounds min-max"), rows))
    print()
    ratio = _common.median(ratios("ours-0"))
    ratio2 = _common.median(ratios("ours-2"))
    lines = [
        _common.target_line(
            f"ours, 0 events: {ratio:.2f}x raw time to first message (target <= {TARGET}x)",
            round(ratio, 2) <= TARGET,
        ),
        _common.target_line(
            f"ours, 2 events: {ratio2:.2f}x raw time to first message (target <= {TARGET}x)",
            round(ratio2, 2) <= TARGET,
        ),
    ]
    for line in lines:
        print(line)
    return 1 if options.check and any(line.endswith("MISSED") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
