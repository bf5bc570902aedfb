"""Instructions per call of each transport's call scope (server.calls.CallScope), in process, by callgrind.

Every call opens one (``GrpcCallScope``, ``ConnectCallScope``, ``HttpCallScope``): it counts, makes
current and ends the call, so its cost is paid once per call on the path to the first message. Each
transport's scope runs ``--calls`` and ``3 x --calls`` times with a fake context (no metrics, no
tracing) in a process under ``valgrind --tool=callgrind``; the difference of the two totals over
``2 x --calls`` is one call, start-up and imports cancelled out. Deterministic to a few instructions.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import typing

from bench import _common

TRANSPORTS = ("grpc", "connect", "http")
PATH = "/orders.v1.OrderService/ProcessOrders"


class _GrpcContext:
    """What GrpcCallScope reads from and writes to a grpc.aio ServicerContext."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("user-agent", "bench"), ("x-request-id", "req-1"))

    def set_trailing_metadata(self, metadata: typing.Any) -> None:
        self.trailing = metadata


class _ConnectContext:
    """What ConnectCallScope reads from and writes to a connectrpc RequestContext."""

    def __init__(self) -> None:
        self.request_headers = {"content-type": "application/connect+proto", "x-request-id": "req-1"}
        self.response_headers: dict[str, str] = {}


def run(transport: str, calls: int) -> None:
    """``calls`` calls through ``transport``'s scope, each ending OK."""
    from server.calls import CallRegistry, GrpcCallScope, HttpCallScope
    from server.connect.calls import ConnectCallScope

    registry = CallRegistry()
    if transport == "grpc":
        grpc_context = typing.cast(typing.Any, _GrpcContext())  # a fake: the attributes the scope uses
        for _ in range(calls):
            with GrpcCallScope(registry, PATH, grpc_context) as call:
                call.items += 1
    elif transport == "connect":
        connect_context = typing.cast(typing.Any, _ConnectContext())
        for _ in range(calls):
            with ConnectCallScope(registry, PATH, connect_context) as call:
                call.items += 1
    else:
        headers = {"x-request-id": "req-1"}
        for _ in range(calls):
            with HttpCallScope(registry, PATH, "req-1", carrier=headers) as call:
                call.items += 1
                call.succeeded()  # the HTTP edge reports its outcome itself
    if registry.active:
        raise AssertionError(f"{registry.active} calls still counted")


def _count(transport: str, calls: int, workdir: pathlib.Path) -> int:
    out = workdir / f"{transport}.{calls}.callgrind"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            f"--log-file={workdir / transport}.log",
            sys.executable,
            "-m",
            "bench.call_scope",
            "--run",
            transport,
            "--calls",
            str(calls),
        ],
        cwd=_common.REPO,
        check=True,
        timeout=600,
        capture_output=True,
    )
    totals = re.findall(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if not totals:
        raise RuntimeError(f"no instruction total in {out}")
    return int(totals[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.call_scope", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls in the shorter run (default 2000)")
    parser.add_argument("--run", choices=TRANSPORTS, help=argparse.SUPPRESS)  # the measured process
    options = parser.parse_args(argv)
    if options.run is not None:
        run(options.run, options.calls)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package valgrind): nothing counted")
        return 0
    for line in _common.environment():
        print(line)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rill-call-scope-") as directory:
        workdir = pathlib.Path(directory)
        for transport in TRANSPORTS:
            short = _count(transport, options.calls, workdir)
            long = _count(transport, 3 * options.calls, workdir)
            rows.append((transport, f"{(long - short) / (2 * options.calls):,.0f}"))
    print(f"runs:     {options.calls} and {3 * options.calls} calls per transport, the difference counted")
    print()
    print(_common.table(("scope", "instr/call"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
