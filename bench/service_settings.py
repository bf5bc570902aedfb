"""What each default of ``python -m server`` costs under 1,000 streams: one default turned off at a time.

The service of ``bench service`` (``python -m server``, its defaults) next to copies of it with one
setting changed through the environment, and the hand-written servicer as the anchor, all under
``bench service``'s many-streams load (``--streams`` x ``--stream-items`` over ``--channels`` from
``--clients`` client processes) in interleaved rounds. Reported: msgs/s, server CPU per message and
the first-message p99, each as a median over rounds, and msgs/s as a ratio to the defaults. A
variant's gain is what that default costs; the gains need not add up (they share the loop's turns).
"""

from __future__ import annotations

import argparse
import os
import sys

from bench import _common, grpc_throughput, service

VARIANTS: dict[str, dict[str, str]] = {
    "defaults": {},
    "metrics off": {"RILL_METRICS": "false"},
    "no event-handler timeout": {"RILL_ORDERS": '{"event_handler_timeout": null}'},
    "log level WARNING": {"RILL_LOG_LEVEL": "WARNING"},
    "no stall timeout": {"RILL_LIMITS__STALL_TIMEOUT": "off"},
    "devnull broker": {"RILL_BROKER": "devnull"},
    "all five": {
        "RILL_METRICS": "false",
        "RILL_ORDERS": '{"event_handler_timeout": null}',
        "RILL_LOG_LEVEL": "WARNING",
        "RILL_LIMITS__STALL_TIMEOUT": "off",
        "RILL_BROKER": "devnull",
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service_settings", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--stream-items", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--only", help="comma-separated variant names (defaults and the anchor always run)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    options = parser.parse_args(argv)
    specs = service.specs(grpc_throughput.server_loop(options.loop))
    variants = dict(VARIANTS)
    if options.only:
        wanted = {"defaults", *options.only.split(",")}
        variants = {name: env for name, env in variants.items() if name in wanted}
    for line in _common.environment():
        print(line)
    clean = {name: value for name, value in os.environ.items() if not name.startswith("RILL_")}
    started: dict[str, _common.ServerProcess] = {}
    runs: dict[str, list[service.Many]] = {}
    try:
        args, ready = specs["handwritten"]
        started["hand-written servicer"] = _common.ServerProcess(
            "handwritten", args, ready_prefix=ready, env=clean
        )
        args, ready = specs["service"]
        for name, env in variants.items():
            started[name] = _common.ServerProcess(name, args, ready_prefix=ready, env={**clean, **env})
        runs = {name: [] for name in started}
        with _common.Noise(lambda: [server.pid for server in started.values()]) as noise:
            keys = list(started)
            for round_ in range(options.rounds):
                shift = round_ % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    runs[key].append(service.many_streams(started[key], options))
                print(f"  round {round_ + 1}/{options.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in started.values():
            server.stop()
    print(
        f"runs:     {options.rounds} rounds of {options.streams:,} x {options.stream_items} items over "
        f"{options.channels} channels from {options.clients} client processes; medians over rounds"
    )
    print(noise.line)
    print()
    rates = {key: [run.rate for run in values] for key, values in runs.items()}
    rows = [
        (
            f"{key}: {' '.join(f'{k}={v}' for k, v in variants.get(key, {}).items())}".rstrip(": "),
            f"{_common.median(rates[key]):,.0f}",
            f"{_common.ratio(rates[key], rates['defaults']):.2f}",
            f"{_common.median(run.cpu_us for run in values):.1f}",
            f"{_common.median(_common.percentile(run.first, 0.99) for run in values) * 1e3:,.0f}",
            str(sum(run.failed for run in values)),
        )
        for key, values in runs.items()
    ]
    header = ("server", "msgs/s", "x defaults", "CPU µs/msg", "first p99 ms", "not OK")
    print(_common.table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
