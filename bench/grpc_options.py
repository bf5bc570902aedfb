"""What raises the ceiling: event loop, server options, message shape; before/after for our defaults.

Same harness as ``grpc_throughput`` (one process per server, one client, interleaved rounds), with
variants of the raw server and of ours (0 and 2 events):

- loop: asyncio vs uvloop (``python -m server`` now uses uvloop when installed);
- server option ``grpc.optimization_target=throughput``, and a 1 MiB HTTP/2 write buffer;
- message shape: the same message without its ``Timestamp`` sub-message (what the field costs);
- ours, "before": the adapter's converter as it was (``Timestamp.FromDatetime``), on asyncio:
  the service's per-item path before this benchmark's changes; "after": as it is now, on uvloop.

Every ratio is against raw on asyncio, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import _common, grpc_throughput
from bench.grpc_throughput import Path


def variants(items: int) -> list[Path]:
    def raw(*extra: str) -> list[str]:
        return _common.bench_server("raw", *extra)

    def ours(*extra: str) -> list[str]:
        return _common.bench_server("ours", *extra)

    return [
        Path("raw", "raw, asyncio", raw("--loop", "asyncio"), items),
        Path("raw-uvloop", "raw, uvloop", raw("--loop", "uvloop"), items),
        Path(
            "raw-throughput",
            "raw, asyncio, optimization_target=throughput",
            raw("--loop", "asyncio", "--option", "grpc.optimization_target=throughput"),
            items,
        ),
        Path(
            "raw-buffer",
            "raw, asyncio, http2.write_buffer_size=1 MiB",
            raw("--loop", "asyncio", "--option", f"grpc.http2.write_buffer_size={1 << 20}"),
            items,
        ),
        Path(
            "raw-small",
            "raw, asyncio, no Timestamp field",
            raw("--loop", "asyncio", "--shape", "small"),
            items,
        ),
        Path(
            "ours-0-before",
            "ours 0 ev, before (asyncio, FromDatetime)",
            ours("--loop", "asyncio", "--convert", "fromdatetime"),
            items,
        ),
        Path("ours-0-after", "ours 0 ev, after (uvloop, fast stamp)", ours("--loop", "uvloop"), items),
        Path(
            "ours-2-before",
            "ours 2 ev, before (asyncio, FromDatetime)",
            ours("--loop", "asyncio", "--events", "2", "--convert", "fromdatetime"),
            items,
        ),
        Path(
            "ours-2-after",
            "ours 2 ev, after (uvloop, fast stamp)",
            ours("--loop", "uvloop", "--events", "2"),
            items,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc_options", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=10_000, help="items per stream (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians (default 3)")
    options = parser.parse_args(argv)
    chosen = variants(options.items)
    for line in _common.environment():
        print(line)
    print(f"loops:    client {_common.loop_name()}; servers as labelled, one process each")
    with _common.servers({path.key: path.args for path in chosen}) as servers:
        started = time.perf_counter()
        with _common.Noise(lambda: [server.pid for server in servers.values()]) as noise:
            _common.run(grpc_throughput.measure(chosen, servers, options.rounds, min(2_000, options.items)))
        took = time.perf_counter() - started
    print(
        f"runs:     {options.rounds} rounds interleaved, {took:.0f} s; "
        "medians over rounds, ratios the median of per-round ratios"
    )
    print(noise.line)
    print()
    text, _ = grpc_throughput.report(chosen)
    print(text)
    by_key = {path.key: path for path in chosen}
    print()
    for events in (0, 2):
        before, after = by_key[f"ours-{events}-before"], by_key[f"ours-{events}-after"]
        print(
            f"ours, {events} events: after/before {_common.ratio(after.rates, before.rates):.2f}x msgs/s, "
            f"{_common.ratio(after.cpu, before.cpu):.2f}x server CPU per message"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
