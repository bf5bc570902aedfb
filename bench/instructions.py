"""Server instructions per call and per item, counted by callgrind: raw grpc.aio vs ours vs python-cqrs.

Wall-clock ratios on a shared 2-core machine move by 5-10 % from run to run; instruction counts do not.
callgrind counts the user-space instructions the server process executes (every thread: the event
loop and grpc's poller), the same for the same binaries and inputs whatever else the machine does.
They are not time: cache misses, system calls and the kernel's share are not in them. Read them
beside ``grpc_throughput`` and ``first_message``, which measure time.

Each server (``bench._servers``, as in ``grpc_throughput``) runs once under ``valgrind
--tool=callgrind`` with instrumentation off; after a warm-up it is switched on (``callgrind_control``)
for ``--calls`` calls of 1 item, dumped, then for ``--calls`` calls of ``--items`` items, dumped:

- per call: the first count / calls: a whole call with its one message, the work behind the time to
  first message;
- per item: (the second count / calls - per call) / (items - 1): the work behind streaming throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc

from bench import _common, grpc_throughput

WARM_UP_CALLS = 200  # before counting: grpc's and Python's caches and lazy imports are warm


@dataclasses.dataclass
class Counted:
    key: str
    label: str
    per_call: float
    per_item: float


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=120, check=True)


def _dumped(out: pathlib.Path, part: int) -> int:
    text = pathlib.Path(f"{out}.{part}").read_text()
    totals = re.findall(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if not totals:
        raise RuntimeError(f"no instruction total in {out}.{part}")
    return int(totals[0])


async def _measure_path(path: grpc_throughput.Path, calls: int, items: int, workdir: pathlib.Path) -> Counted:
    """One server under callgrind, counting only while the measured calls run."""
    out = workdir / f"{path.key}.callgrind"
    process = await asyncio.create_subprocess_exec(
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",  # start-up and warm-up are not counted (nor slowed down)
        f"--callgrind-out-file={out}",
        "--dump-instr=no",
        f"--log-file={workdir / path.key}.log",
        sys.executable,
        *path.args,
        cwd=_common.REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=300)).decode()
        if not line.startswith(("ready ", "listening on ")):
            raise RuntimeError(f"{path.key}: the server did not start under valgrind: {line!r}")
        port = line.split()[-1].rpartition(":")[2]  # "ready PORT" or "listening on HOST:PORT"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = grpc_throughput.stream_method(channel)

            async def serve(count: int, size: int) -> None:
                body = grpc_throughput.request(size)
                for _ in range(count):
                    if (got := await grpc_throughput.read_all(method, body)) != size:
                        raise AssertionError(f"{path.key}: {got} items, {size} expected")

            await serve(WARM_UP_CALLS, 1)
            await serve(WARM_UP_CALLS // 10, items)
            await asyncio.to_thread(_control, process.pid, "--instr=on")
            await serve(calls, 1)
            await asyncio.to_thread(_control, process.pid, "--dump")  # out.1: the 1-item calls
            await serve(calls, items)
            await asyncio.to_thread(_control, process.pid, "--dump")  # out.2: the longer calls
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    per_call = _dumped(out, 1) / calls
    counted = Counted(path.key, path.label, per_call, (_dumped(out, 2) / calls - per_call) / (items - 1))
    print(f"  {path.key} counted", file=sys.stderr, flush=True)
    return counted


async def measure(chosen: list[grpc_throughput.Path], calls: int, items: int, parallel: int) -> list[Counted]:
    slots = asyncio.Semaphore(parallel)
    with tempfile.TemporaryDirectory(prefix="rill-callgrind-") as directory:

        async def one(path: grpc_throughput.Path) -> Counted:
            async with slots:
                return await _measure_path(path, calls, items, pathlib.Path(directory))

        return list(await asyncio.gather(*(one(path) for path in chosen)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--calls", type=int, default=200, help="counted calls of each kind (default 200)")
    parser.add_argument("--items", type=int, default=101, help="items per longer call (default 101)")
    parser.add_argument("--parallel", type=int, default=2, help="servers counted at once (default 2)")
    parser.add_argument(
        "--only", help="comma-separated path keys (raw, ours-0, ours-2, cqrs-0, cqrs-2, hand, service)"
    )
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=0.0,
        help="ours: the service's stall timeout (30); default 0: none",
    )
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package valgrind): nothing counted")
        return 0
    if options.items < 2 or options.calls < 1:
        parser.error("--items must be at least 2 and --calls at least 1")
    loop = grpc_throughput.server_loop(options.loop)
    chosen = grpc_throughput.only(
        [
            *grpc_throughput.paths(options.items, options.items, loop, options.stall_timeout),
            *_service_paths(loop),
        ],
        options.only,
    )
    for line in _common.environment():
        print(line)
    print(f"tool:     {_valgrind_version()}; servers' loop {loop}")
    started = time.perf_counter()
    counted = _common.run(measure(chosen, options.calls, options.items, options.parallel))
    print(
        f"runs:     per server, after {WARM_UP_CALLS} calls to warm up: {options.calls} calls of 1 item, "
        f"then {options.calls} calls of {options.items} items, counted apart; "
        f"{time.perf_counter() - started:.0f} s"
    )
    print()
    raw = counted[0]
    rows = [
        (
            path.label,
            f"{path.per_call:,.0f}",
            f"{path.per_call / raw.per_call:.3f}",
            f"{path.per_item:,.0f}",
            f"{path.per_item / raw.per_item:.3f}",
        )
        for path in counted
    ]
    header = ("path", "instr/call", "x raw", "instr/item", "x raw")
    print(_common.table(header, rows))
    return 0


def _service_paths(loop: str) -> list[grpc_throughput.Path]:
    """``bench service``'s anchor and the real service: the demo's ProcessOrders, by hand and served."""
    from bench import service  # its servers; imported here, as service imports this module's peers

    specs = service.specs(loop)
    return [
        grpc_throughput.Path("hand", "hand-written servicer (demo's work)", specs["handwritten"][0], 0),
        grpc_throughput.Path("service", "python -m server (defaults)", specs["service"][0], 0),
    ]


def _valgrind_version() -> str:
    try:
        found = subprocess.run(
            ["valgrind", "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        return found.stdout.strip() or "valgrind"
    except OSError:
        return "valgrind"


if __name__ == "__main__":
    sys.exit(main())
