"""Scale-out: msgs/s of ``python -m server --workers 1`` vs ``--workers 2`` under several client processes.

Both servers run at once on their own fixed ports (the real service, ProcessOrders with its 3 events
per item, a devnull broker, HTTP edge off, log level WARNING). ``--clients`` client processes (default
4) each open ``--connections`` connections (default 4; ``SO_REUSEPORT`` spreads connections, not
streams, over the workers) and read one stream of ``--items`` items (default 2,000) on each, all at
once, after a warm-up call on every connection. Throughput is all items over the wall time from "go"
to the last client done. Rounds alternate the two servers. The CPU columns add up the CPU time the
server's processes (all workers) and the clients used per message: on a 2-core machine, the clients
need CPU too, so the workers cannot have a core each.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import typing

import grpc

from bench import _common, grpc_throughput


# -- a client process -------------------------------------------------------------------------------
async def _client(address: str, connections: int, items: int) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
    methods = [grpc_throughput.stream_method(channel) for channel in channels]
    await asyncio.gather(
        *(grpc_throughput.read_all(method, grpc_throughput.request(10)) for method in methods)
    )
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    body = grpc_throughput.request(items)
    started = time.perf_counter()
    counts = await asyncio.gather(*(grpc_throughput.read_all(method, body) for method in methods))
    print(f"done {time.perf_counter() - started:.6f} {sum(counts)}", flush=True)
    await asyncio.gather(*(channel.close() for channel in channels))


# -- the benchmark ----------------------------------------------------------------------------------
class Workers:
    """``python -m server --workers N`` on a free port; ready when every worker said so."""

    def __init__(self, workers: int, loop: str, state: str = "") -> None:
        self.address = f"127.0.0.1:{_common.free_port()}"
        env = {**os.environ, "RILL_BROKER": "devnull", "RILL_LOG_LEVEL": "WARNING"}
        # The workers of one server share its store (as a deployment's do); each server has its own.
        if state == "memory":
            env["RILL_DATABASE_URL"] = "memory"
        elif state:
            env["RILL_STATE_DIR"] = f"{state}/workers-{workers}"
        command = ["-m", "server", "--address", self.address, "--http-address", ""]
        self.process = subprocess.Popen(
            [sys.executable, *command, "--workers", str(workers), "--loop", loop],
            cwd=_common.REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.pids = []
        for _ in range(workers):
            line = self.process.stdout.readline()
            if not line.startswith("listening on "):
                self.stop()
                raise RuntimeError(f"server with {workers} workers did not start: {line!r}")
            self.pids.append(
                int(line.rpartition("pid ")[2].rstrip(")\n")) if "pid" in line else self.process.pid
            )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


T = typing.TypeVar("T")


@dataclasses.dataclass
class Driven(typing.Generic[T]):
    """One run of client processes told "go" together: the wall time and what each reported."""

    seconds: float
    done: list[str]
    """Each client's last line, after ``done ``."""
    clients_cpu: float
    before: T
    after: T
    """``snapshot()`` just before "go" and once the last client is done."""


def drive_clients(command: typing.Sequence[str], clients: int, snapshot: typing.Callable[[], T]) -> Driven[T]:
    """``clients`` processes of ``command`` (each prints ``ready`` once connected and warm, waits for a
    line on stdin, then prints ``done ...``), told "go" together; every one stopped before returning."""
    procs = [
        subprocess.Popen(command, cwd=_common.REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(clients)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a client did not start")
        before = snapshot()
        clients_cpu = _common.process_cpu(proc.pid for proc in procs)
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        done = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("done "):
                raise RuntimeError(f"a client failed: {line!r}")
            done.append(line.removeprefix("done ").strip())
        seconds = time.perf_counter() - started
        after = snapshot()
        clients_cpu = _common.process_cpu(proc.pid for proc in procs) - clients_cpu
        return Driven(seconds, done, clients_cpu, before, after)
    except BaseException:
        for proc in procs:  # the others would wait for "go" (or run) for nothing
            proc.kill()
        raise
    finally:
        for proc in procs:
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def one_run(server: Workers, clients: int, connections: int, items: int) -> tuple[float, float, float]:
    """msgs/s, server CPU µs/msg, client CPU µs/msg."""
    command = [sys.executable, "-m", "bench.scale_out", "--client", server.address]
    command += ["--connections", str(connections), "--items", str(items)]
    run = drive_clients(command, clients, lambda: _common.process_cpu(server.pids))
    total = sum(int(line.split()[1]) for line in run.done)
    if total != clients * connections * items:
        raise AssertionError(f"{total} items, {clients * connections * items} expected")
    server_cpu = run.after - run.before
    return total / run.seconds, server_cpu / total * 1e6, run.clients_cpu / total * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_out", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--connections", type=int, default=4, help="connections per client (default 4)")
    parser.add_argument("--items", type=int, default=2_000, help="items per stream (default 2,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians (default 3)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument("--memory", action="store_true", help="the demo's state in memory (no store)")
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.client:
        _common.run(_client(options.client, options.connections, options.items))
        return 0
    for line in _common.environment():
        print(line)
    loop = grpc_throughput.server_loop(options.loop)
    with tempfile.TemporaryDirectory(prefix="rill-scale-out-") as state:
        return _measure(options, loop, "memory" if options.memory else state)


def _measure(options: argparse.Namespace, loop: str, state: str) -> int:
    where = "in memory" if state == "memory" else "the default store (SQLite), one file per server"
    print(f"state:    {where}")
    servers = {1: Workers(1, loop, state)}
    try:
        servers[2] = Workers(2, loop, state)
        results: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        with _common.Noise(lambda: [pid for server in servers.values() for pid in server.pids]) as noise:
            for round_ in range(options.rounds):
                for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                    results[workers].append(
                        one_run(servers[workers], options.clients, options.connections, options.items)
                    )
                print(f"  round {round_ + 1}/{options.rounds} done", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(
        f"runs:     {options.clients} client processes x {options.connections} connections x 1 stream of "
        f"{options.items:,} items, servers on {loop}; {options.rounds} rounds alternating; medians"
    )
    print(noise.line.replace("the benchmark's processes", "the servers"))
    print()
    rates = {workers: [run[0] for run in runs] for workers, runs in results.items()}
    rows = [
        (
            f"--workers {workers}",
            f"{_common.median(rates[workers]):,.0f}",
            "1.00" if workers == 1 else f"{_common.ratio(rates[2], rates[1]):.2f}",
            f"{_common.median(run[1] for run in runs):.1f}",
            f"{_common.median(run[2] for run in runs):.1f}",
        )
        for workers, runs in results.items()
    ]
    print(_common.table(("server", "msgs/s", "x 1 worker", "server CPU µs/msg", "clients CPU µs/msg"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
