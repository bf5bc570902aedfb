"""What the end-to-end benchmarks share: server processes, the machine lines, noise, tables, ratios."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import typing

REPO = pathlib.Path(__file__).resolve().parent.parent

PACKAGES = (
    "rill-grpc",
    "grpcio",
    "protobuf",
    "pydantic",
    "python-cqrs",
    "uvloop",
    "uvicorn",
    "sse-starlette",
    "httpx",
)


# -- the machine ------------------------------------------------------------------------------------
def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def source() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "mediator", "server")
    except (OSError, subprocess.SubprocessError):
        return f"{REPO} (not a git checkout)"
    return f"mediator/ and server/ at {commit}{' + uncommitted changes' if changed else ''}"


def environment(packages: typing.Iterable[str] = PACKAGES) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine:  {os.cpu_count()} CPUs (nproc {usable}), {platform.platform()}",
        f"python:   {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"packages: {', '.join(f'{name} {version(name)}' for name in packages)}",
        f"source:   {source()}",
    ]


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy and steal CPU seconds (/proc/stat) and wall time."""

    busy: float
    steal: float
    wall: float

    @classmethod
    def take(cls) -> CpuSnapshot | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(value) for value in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return cls((user + nice + system + irq + softirq) / tick, steal / tick, time.perf_counter())


def process_cpu(pids: typing.Iterable[int]) -> float:
    """CPU seconds used so far by ``pids`` (utime + stime, children excluded)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Noise:
    """How busy the machine was beyond the benchmark's own processes, while measuring."""

    def __init__(self, own_pids: typing.Callable[[], typing.Iterable[int]]) -> None:
        self._own_pids = own_pids
        self._start: CpuSnapshot | None = None
        self._own_start = 0.0

    def __enter__(self) -> Noise:
        self._start = CpuSnapshot.take()
        self._own_start = process_cpu(self._own_pids()) + time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.line = ""
        end = CpuSnapshot.take()
        if self._start is None or end is None:
            return
        wall = end.wall - self._start.wall
        own = process_cpu(self._own_pids()) + time.process_time() - self._own_start
        others = max(end.busy - self._start.busy - own, 0.0)
        self.line = (
            f"noise:    while measuring, the benchmark's processes used {own / wall:.2f} CPUs and other "
            f"processes {others / wall:.2f} of the {os.cpu_count()} CPUs on average, hypervisor steal "
            f"{(end.steal - self._start.steal) / wall:.2f} CPU"
        )


# -- server processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``python -m bench._servers ...`` (or any command printing ``ready PORT``) in its own process."""

    def __init__(
        self,
        name: str,
        args: typing.Sequence[str],
        *,
        ready_prefix: str = "ready ",
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        # A file, not a pipe nobody reads: a server logging every call (INFO) must never block on it.
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(ready_prefix):
            self.process.kill()
            self.process.communicate()
            self._stderr.seek(0)
            raise RuntimeError(f"server {name} did not start: {line!r}\n{self._stderr.read()}")
        self.address = line.removeprefix(ready_prefix).split()[0]
        if ":" not in self.address:
            self.address = f"127.0.0.1:{self.address}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` value in kB (e.g. ``VmHWM``, peak resident set), 0 if unknown."""
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
        return 0

    def reset_peak(self) -> None:
        """Start VmHWM afresh at the current resident set (Linux ``clear_refs`` 5)."""
        with contextlib.suppress(OSError):
            pathlib.Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def servers(specs: dict[str, list[str]]) -> typing.Iterator[dict[str, ServerProcess]]:
    started: dict[str, ServerProcess] = {}
    try:
        for name, args in specs.items():
            started[name] = ServerProcess(name, args)
        yield started
    finally:
        for server in started.values():
            server.stop()


def bench_server(kind: str, *options: str) -> list[str]:
    return ["-m", "bench._servers", kind, *options]


CLIENT_LOOP = "uvloop"  # the benchmarks' own (client) loop: the client should not be the bottleneck

T = typing.TypeVar("T")


def _loop_factory(name: str) -> typing.Callable[[], asyncio.AbstractEventLoop] | None:
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: typing.Coroutine[typing.Any, typing.Any, T], loop: str = CLIENT_LOOP) -> T:
    """``asyncio.run`` on ``loop`` ("uvloop" when installed, else asyncio), leaving the policy alone."""
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(coro)


def loop_name(loop: str = CLIENT_LOOP) -> str:
    factory = _loop_factory(loop) or asyncio.new_event_loop
    instance = factory()
    try:
        return f"{type(instance).__module__}.{type(instance).__name__}"
    finally:
        instance.close()


# -- statistics and tables --------------------------------------------------------------------------
def median(values: typing.Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(numerator: typing.Sequence[float], denominator: typing.Sequence[float]) -> float:
    """The median of per-round ratios (both measured in the same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def percentile(values: typing.Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def table(header: typing.Sequence[str], rows: typing.Sequence[typing.Sequence[str]], left: int = 1) -> str:
    """A plain text table; the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def fmt(row: typing.Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(widths[i]) if i < left else str(cell).rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * width for width in widths), *(fmt(row) for row in rows)])


def target_line(text: str, met: bool) -> str:
    return f"target:   {text}: {'met' if met else 'MISSED'}"
