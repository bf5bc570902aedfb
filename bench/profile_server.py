"""Where a server's time goes under 1,000 streams: a py-spy profile, top functions by own and total time.

One server of ``bench service`` (``--server``: service, handwritten, cqrs, raw) serves the
many-streams load of that benchmark (``--streams`` x ``--stream-items`` over ``--channels`` from
``--clients`` client processes) over and over while ``py-spy record`` samples it for ``--seconds``
(``--rate`` samples a second, ``--nonblocking``: the server is not stopped to be read). Printed: the
``--top`` functions by own samples (the function itself was running) and by total samples (it was on
the stack), as a percentage of the samples in which the server's main thread ran Python. Time in C
(grpc's Cython core, uvloop, protobuf's upb) is counted in the Python function that called it.
``--raw FILE`` keeps py-spy's collapsed stacks (``py-spy record --format raw``; flame graphs read it).
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading

from bench import _common, grpc_throughput, service


def top(raw: str, count: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples, and the ``count`` functions with the most own and total samples, from collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [frame for frame in stack.split(";")[1:] if frame]  # [0] names the thread
        if not frames:
            continue
        weight = int(number)
        samples += weight
        own[_short(frames[-1])] += weight
        for frame in {_short(frame) for frame in frames}:
            total[frame] += weight
    return samples, own.most_common(count), total.most_common(count)


def _short(frame: str) -> str:
    """``handle (server/services/orders.py)`` with the path from the package root on."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", f"{_common.REPO}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_server", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--server", default="service", choices=tuple(service.LABELS))
    parser.add_argument("--seconds", type=int, default=20, help="sampling time (default 20)")
    parser.add_argument("--rate", type=int, default=250, help="samples a second (default 250)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    parser.add_argument("--raw", type=pathlib.Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--native", action="store_true", help="C frames too (py-spy --native; slower)")
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--stream-items", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="server's loop")
    parser.add_argument(
        "--memory", action="store_true", help="the service's state in memory (RILL_DATABASE_URL=memory)"
    )
    options = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    if not pathlib.Path(spy).exists():
        print("py-spy is not installed (the dev extra has it): nothing profiled")
        return 0
    for line in _common.environment():
        print(line)
    args, ready = service.specs(grpc_throughput.server_loop(options.loop))[options.server]
    env = {name: value for name, value in os.environ.items() if not name.startswith("RILL_")}
    if options.memory:
        env["RILL_DATABASE_URL"] = "memory"
    server = _common.ServerProcess(options.server, args, ready_prefix=ready, env=env)
    runs: list[service.Many] = []
    try:
        service.many_streams(server, options)  # warm: every code path has run once before sampling
        with tempfile.TemporaryDirectory(prefix="rill-py-spy-") as directory:
            out = pathlib.Path(directory) / "stacks.txt"
            record = subprocess.Popen(
                [spy, "record", "--pid", str(server.pid), "--duration", str(options.seconds)]
                + ["--rate", str(options.rate), "--format", "raw", "--function"]
                + ([] if options.native else ["--nonblocking"])
                + ["--output", str(out)]
                + (["--native"] if options.native else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            done = threading.Event()

            def wait_for_record() -> None:
                record.wait()
                done.set()

            waiter = threading.Thread(target=wait_for_record, daemon=True)
            waiter.start()
            while not done.is_set():
                runs.append(service.many_streams(server, options))
            waiter.join()
            if record.returncode != 0 or not out.exists():
                assert record.stderr is not None
                print(f"py-spy failed: {record.stderr.read().strip()}")
                return 1
            raw = out.read_text()
            if options.raw:
                options.raw.write_text(raw)
    finally:
        server.stop()
    samples, own, total = top(raw, options.top)
    rate = _common.median(run.rate for run in runs)
    cpu = _common.median(run.cpu_us for run in runs)
    print(
        f"runs:     {service.LABELS[options.server]}; {len(runs)} runs of {options.streams:,} x "
        f"{options.stream_items} items while sampling {options.seconds} s at {options.rate}/s "
        f"(median {rate:,.0f} msgs/s, {cpu:.0f} µs server CPU per message, under py-spy); "
        f"{samples:,} samples with Python running"
    )
    print()
    width = max(len(name) for name, _ in own + total)
    for title, rows in (("own", own), ("total", total)):
        print(
            _common.table(
                (f"top by {title} time", "samples", "%"),
                [(name.ljust(width), f"{count:,}", f"{count / samples * 100:.1f}") for name, count in rows],
            )
        )
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
