"""Replicas behind HAProxy: 1 replica direct vs 1 and 2 replicas behind the proxy, state in PostgreSQL.

Two ``python -m server`` replicas (the real service, ProcessOrders with its 3 events per item, a
devnull broker, HTTP edge off, log level WARNING) share one PostgreSQL database of the benchmark's own
(created on the machine's server, dropped at the end; ``--memory``: each replica's state in memory)
and run beside two HAProxy 2.6 processes, the configuration of docs/deploy.md written by
``tests/deploy/proxy.py``: one in front of replica 0, one in front of both (round robin per call).
Three setups, measured in interleaved rounds: replica 0 direct, replica 0 behind HAProxy, both
behind HAProxy. ``--clients`` client processes (default 4), each with ``--connections`` connections
(default 2), start ``--streams`` streams each (default 50) of ``--items`` items (default 40) at once,
after a warm-up call on every connection (``bench.concurrency``'s driver in each client; every
stream asks for order ids of its own, as real callers do: streams upserting the same rows from two
replicas would wait on each other's row locks). Reported: msgs/s over "go" to the last client done;
msgs/s per core the service used (the replicas' CPU + the proxy's, from ``/proc``); CPU per message
of the replicas, the proxy, the database's backends (those connected to the benchmark's database;
the WAL writer and checkpointer not included) and the clients; the time to the first message of the
concurrent streams; and what bounds it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import typing
import uuid

import asyncpg

from bench import _common, concurrency, grpc_throughput, scale_out
from tests.deploy.conftest import fresh_database
from tests.deploy.processes import ServerProcess, running_server
from tests.deploy.proxy import HAPROXY, Proxy, running_proxy

CORES = os.cpu_count() or 1
PACKAGES = ("rill-grpc", "grpcio", "protobuf", "pydantic", "uvloop", "sqlalchemy", "asyncpg")


# -- a client process -------------------------------------------------------------------------------
def own_ids(method: typing.Any, bodies: typing.Iterator[bytes]) -> typing.Callable[[bytes], typing.Any]:
    """``method`` called with the next of ``bodies`` instead of the body it is given: concurrency's
    driver sends one body to every stream, and each call here asks for order ids of its own."""

    def call(_body: bytes) -> typing.Any:
        return method(next(bodies))

    return call


async def _client(address: str, connections: int, streams: int, items: int) -> None:
    channels = concurrency.open_channels(address, connections)
    try:
        tag = uuid.uuid4().hex[:12]
        # Built before the clock starts: a warm-up call per connection, then the streams.
        bodies = iter([grpc_throughput.request(items, f"{tag}-{n}-") for n in range(connections + streams)])
        methods = [own_ids(grpc_throughput.stream_method(channel), bodies) for channel in channels]
        await concurrency.warm_up(methods)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        seen = await concurrency.run_streams(methods, streams, items)
        report = {"seconds": seen.seconds, "first": seen.first, "failed": seen.failed, "codes": seen.codes}
        print(f"done {json.dumps(report)}", flush=True)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


# -- CPU of the processes that serve ------------------------------------------------------------------
def database_backends(database: str) -> list[int]:
    """PostgreSQL's backends connected to ``database`` (their title: ``postgres: ... USER DATABASE HOST``)."""
    if not database:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = pathlib.Path(entry.path, "cmdline").read_bytes()
                if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                    pids.append(int(entry.name))
    return pids


class Outbox:
    """The benchmark's database's outbox: a run is over once the relays have published its rows."""

    def __init__(self, connection: asyncpg.Connection | None) -> None:
        self._connection = connection

    async def drained(self) -> float:
        """Seconds until no row is pending (0 in memory: notifications go straight to the broker)."""
        if self._connection is None:
            return 0.0
        started = time.perf_counter()
        while pending := await self._connection.fetchval(
            "SELECT count(*) FROM outbox WHERE state = 'pending'"
        ):
            if time.perf_counter() - started > 300:
                raise TimeoutError(f"{pending} outbox rows still pending after 300 s")
            await asyncio.sleep(0.05)  # polled: the relays tell nobody when they have published
        return time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class Sample:
    """Cumulative CPU seconds of each part, and the machine's, at one moment."""

    replicas: list[float]
    proxy: float
    database: dict[int, float]
    machine: _common.CpuSnapshot | None
    relay_lag: float
    """Seconds waited for the outbox to drain before this sample."""


@dataclasses.dataclass(frozen=True)
class Setup:
    key: str
    label: str
    address: str
    replica_pids: list[int]
    proxy_pid: int | None

    def sample(self, database: str, relay_lag: float) -> Sample:
        return Sample(
            [_common.process_cpu([pid]) for pid in self.replica_pids],
            _common.process_cpu([self.proxy_pid]) if self.proxy_pid else 0.0,
            {pid: _common.process_cpu([pid]) for pid in database_backends(database)},
            _common.CpuSnapshot.take(),
            relay_lag,
        )


@dataclasses.dataclass(frozen=True)
class Run:
    rate: float
    replicas_us: float
    proxy_us: float
    database_us: float
    clients_us: float
    machine_cpus: float
    """CPUs the whole machine was busy or stolen on average (everyone's processes, the hypervisor's)."""
    relay_lag: float
    replica_shares: list[float]
    """Each replica's part of the replicas' CPU."""
    first: list[float]
    failed: int
    codes: set[str]

    @property
    def per_core(self) -> float:
        """msgs/s per core the service used: the replicas' and the proxy's CPU."""
        return 1e6 / (self.replicas_us + self.proxy_us)


def one_run(
    setup: Setup, options: argparse.Namespace, database: str, settled: typing.Callable[[], float]
) -> Run:
    """One run of the clients against ``setup``; ``settled()`` waits for the outbox to drain."""
    command = [sys.executable, "-m", "bench.replicas", "--client", setup.address]
    command += ["--connections", str(options.connections), "--streams", str(options.streams)]
    command += ["--items", str(options.items)]
    # "after" is sampled once the relays have published the run's notifications: their CPU is the run's.
    driven = scale_out.drive_clients(command, options.clients, lambda: setup.sample(database, settled()))
    reports = [json.loads(line) for line in driven.done]
    total = options.clients * options.streams * options.items  # every stream asked for this many
    before, after = driven.before, driven.after
    database_cpu = sum(cpu - before.database.get(pid, 0.0) for pid, cpu in after.database.items())
    machine = 0.0
    if before.machine and after.machine:
        used = after.machine.busy + after.machine.steal - before.machine.busy - before.machine.steal
        machine = used / (after.machine.wall - before.machine.wall)
    replicas = [end - start for start, end in zip(before.replicas, after.replicas, strict=True)]
    return Run(
        rate=total / driven.seconds,
        replicas_us=sum(replicas) / total * 1e6,
        proxy_us=(after.proxy - before.proxy) / total * 1e6,
        database_us=database_cpu / total * 1e6,
        clients_us=driven.clients_cpu / total * 1e6,
        machine_cpus=machine,
        relay_lag=after.relay_lag,
        replica_shares=[cpu / (sum(replicas) or 1.0) for cpu in replicas],
        first=[seconds for report in reports for seconds in report["first"]],
        failed=sum(report["failed"] for report in reports),
        codes={code for report in reports for code in report["codes"]},
    )


# -- the benchmark ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replicas", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--connections", type=int, default=2, help="connections per client (default 2)")
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams per client (default 50)")
    parser.add_argument("--items", type=int, default=40, help="items per stream (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians (default 3)")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"), help="servers' loop")
    parser.add_argument("--memory", action="store_true", help="each replica's state in memory (no database)")
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.client:
        _common.run(_client(options.client, options.connections, options.streams, options.items))
        return 0
    if not os.path.exists(HAPROXY):
        print(f"{HAPROXY} is missing: `make proxy` installs it", file=sys.stderr)
        return 2
    for line in _common.environment(PACKAGES):
        print(line)
    version = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True, timeout=10).stdout
    print(f"proxy:    {version.splitlines()[0] if version else HAPROXY}")
    return _common.run(_measure(options, grpc_throughput.server_loop(options.loop)))


async def _measure(options: argparse.Namespace, server_loop: str) -> int:
    async with contextlib.AsyncExitStack() as stack:
        logs = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rill-replicas-")))
        if options.memory:
            url, database = "memory", ""
            outbox = Outbox(None)
        else:
            url = await stack.enter_async_context(fresh_database())
            database = url.rpartition("/")[2]
            connection = await asyncpg.connect(url)
            stack.push_async_callback(connection.close)
            outbox = Outbox(connection)
        print(f"state:    {'in memory, each replica its own' if options.memory else 'PostgreSQL, shared'}")
        env = {"RILL_DATABASE_URL": url, "RILL_LOG_LEVEL": "WARNING"}
        replicas: list[ServerProcess] = []
        for index in range(2):
            replicas.append(
                await stack.enter_async_context(
                    running_server(
                        *("--address", "127.0.0.1:0", "--http-address", "", "--loop", server_loop),
                        log=logs / f"replica{index}.log",
                        env=env,
                    )
                )
            )
        proxies: list[Proxy] = []
        for count in (1, 2):
            backends = [replica.address for replica in replicas[:count]]
            proxies.append(
                await stack.enter_async_context(running_proxy(backends, logs / f"haproxy{count}.log"))
            )
        pids = [replica.pid for replica in replicas]
        setups = [
            Setup("direct", "1 replica, direct", replicas[0].address, pids[:1], None),
            Setup(
                "proxy-1", "1 replica behind HAProxy", proxies[0].address, pids[:1], proxies[0].process.pid
            ),
            Setup("proxy-2", "2 replicas behind HAProxy", proxies[1].address, pids, proxies[1].process.pid),
        ]
        runs: dict[str, list[Run]] = {setup.key: [] for setup in setups}
        own = [*pids, *(proxy.process.pid for proxy in proxies)]
        event_loop = asyncio.get_running_loop()

        def settled() -> float:  # called in one_run's thread
            return asyncio.run_coroutine_threadsafe(outbox.drained(), event_loop).result()

        with _common.Noise(lambda: [*own, *database_backends(database)]) as noise:
            for round_ in range(options.rounds):
                shift = round_ % len(setups)
                for setup in setups[shift:] + setups[:shift]:
                    # A thread: the proxies' and replicas' asyncio subprocesses stay watched meanwhile.
                    run = await asyncio.to_thread(one_run, setup, options, database, settled)
                    runs[setup.key].append(run)
                print(f"  round {round_ + 1}/{options.rounds} done", file=sys.stderr, flush=True)
    _report(options, server_loop, setups, runs, noise.line)
    return 0


def _report(
    options: argparse.Namespace, loop: str, setups: list[Setup], runs: dict[str, list[Run]], noise: str
) -> None:
    streams = options.clients * options.streams
    print(
        f"runs:     {options.clients} client processes x {options.connections} connections x "
        f"{options.streams} concurrent streams of {options.items} items ({streams:,} streams, "
        f"{streams * options.items:,} items), servers on {loop}; {options.rounds} rounds rotating; medians"
    )
    print(noise.replace("the benchmark's processes", "the replicas, proxies and database backends"))
    print()
    direct = [run.rate for run in runs["direct"]]
    header = (
        "setup",
        "msgs/s",
        "x direct",
        "msgs/s per core",
        "replicas µs/msg",
        "proxy µs/msg",
        "db µs/msg",
        "clients µs/msg",
        "machine CPUs",
        "relay lag s",
        "replica split",
        "first p50 ms",
        "p99 ms",
        "not OK",
    )
    rows = []
    for setup in setups:
        values = runs[setup.key]
        rows.append(
            (
                setup.label,
                f"{_common.median(run.rate for run in values):,.0f}",
                f"{_common.ratio([run.rate for run in values], direct):.2f}",
                f"{_common.median(run.per_core for run in values):,.0f}",
                f"{_common.median(run.replicas_us for run in values):.1f}",
                f"{_common.median(run.proxy_us for run in values):.1f}",
                f"{_common.median(run.database_us for run in values):.1f}",
                f"{_common.median(run.clients_us for run in values):.1f}",
                f"{_common.median(run.machine_cpus for run in values):.2f}",
                f"{_common.median(run.relay_lag for run in values):.2f}",
                "/".join(
                    f"{_common.median(run.replica_shares[i] for run in values) * 100:.0f}"
                    for i in range(len(setup.replica_pids))
                ),
                f"{_common.median(_common.percentile(run.first, 0.5) for run in values) * 1e3:,.0f}",
                f"{_common.median(_common.percentile(run.first, 0.99) for run in values) * 1e3:,.0f}",
                str(sum(run.failed for run in values))
                + "".join(f" {code}" for code in sorted(set().union(*(run.codes for run in values)))),
            )
        )
    print(_common.table(header, rows))
    print()
    print("bounds (medians; 'ceiling' is what the CPU per message allows on this machine's cores):")
    for setup in setups:
        print(f"  {setup.label}: {_bound(runs[setup.key], streams, len(setup.replica_pids))}")


def _bound(values: list[Run], streams: int, replicas: int) -> str:
    """What set the pace: the cores (everything here shares them), one replica's core, or latency."""
    rate = _common.median(run.rate for run in values)
    replica_us = _common.median(run.replicas_us for run in values)
    proxy_us = _common.median(run.proxy_us for run in values)
    everything_us = _common.median(
        run.replicas_us + run.proxy_us + run.database_us + run.clients_us for run in values
    )
    machine = _common.median(run.machine_cpus for run in values)
    shared = CORES / everything_us * 1e6  # replicas, proxy, PostgreSQL and clients on CORES cores
    one_core = replicas / replica_us * 1e6  # each replica is one Python process: one core at most
    parts = [
        f"machine busy {machine:.2f} of {CORES} CPUs",
        f"ceiling {shared:,.0f} msgs/s with all {CORES} cores shared (replicas + proxy + db + clients "
        f"{everything_us:.0f} µs/msg)",
        f"{one_core:,.0f} with a core per replica",
    ]
    if proxy_us:
        parts.append(f"the proxy alone {1e6 / proxy_us:,.0f} per core")
    if machine >= 0.9 * CORES:
        verdict = "the cores (saturated)"
    elif rate >= 0.8 * one_core:
        verdict = "the replicas' cores"
    else:
        verdict = "latency, not CPU (strict delivery: each stream's next item waits for its commit)"
    per_stream = rate / streams
    parts.append(f"{per_stream:.1f} msgs/s per stream, one item every {1e3 / per_stream:.1f} ms")
    return f"{verdict}: " + "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
