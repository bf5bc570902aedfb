"""Fixtures for the client tests: clients of the in-process server, scripted fake servers, and the
service as a real subprocess (``python -m server``) for the command line and the Node client."""

from __future__ import annotations

import contextlib
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time
import typing

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import RetryPolicy, RillClient
from server import RillServer
from tests.client.fakes import FakeOrderService

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Retries fast enough for tests, with enough attempts to absorb a slow machine.
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
async def client(rill_server: RillServer) -> typing.AsyncIterator[RillClient]:
    async with RillClient(rill_server.address, timeout=30) as client:
        yield client


class FakeServers:
    """Starts grpc.aio servers around fakes on 127.0.0.1:<free port>; all are stopped after the test."""

    def __init__(self) -> None:
        self._servers: list[grpc.aio.Server] = []

    async def start(self, fake: FakeOrderService, credentials: grpc.ServerCredentials | None = None) -> str:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((fake.handler(),))
        if credentials is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", credentials)
        self._servers.append(server)
        await server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop(0)


@pytest.fixture
async def fake_servers() -> typing.AsyncIterator[FakeServers]:
    servers = FakeServers()
    try:
        yield servers
    finally:
        await servers.stop()


class ServerProcess:
    """``python -m server --address 127.0.0.1:0`` as a child process, with its log lines at hand.

    ``python`` and ``cwd``: another interpreter (e.g. a venv the wheel is installed in), run elsewhere.
    """

    def __init__(self, python: str = sys.executable, cwd: pathlib.Path = ROOT) -> None:
        # No HTTP edge: its fixed default port would collide with other servers started by tests.
        # /metrics on a free port of its own: how a test sees, from outside, how calls ended.
        env = {
            **os.environ,
            "RILL_GRACE_PERIOD": "1",
            "RILL_HTTP_ADDRESS": "",
            "RILL_METRICS_ADDRESS": "127.0.0.1:0",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [python, "-m", "server", "--address", "127.0.0.1:0"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stdout: queue.Queue[str] = queue.Queue()
        self._log: list[str] = []
        self._log_changed = threading.Condition()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_stdout, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_log, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.address = self._wait_listening()
        self.metrics_address = self._wait_line("metrics on ")

    def _read_stdout(self, stream: typing.TextIO) -> None:
        for line in stream:
            self._stdout.put(line)
        self._stdout.put("")  # EOF

    def _read_log(self, stream: typing.TextIO) -> None:
        for line in stream:
            with self._log_changed:
                self._log.append(line.rstrip("\n"))
                self._log_changed.notify_all()

    def _wait_listening(self) -> str:
        return self._wait_line("listening on ")

    def _wait_line(self, prefix: str, timeout: float = 30) -> str:
        try:
            line = self._stdout.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            pytest.fail(f"the server printed nothing for {timeout} s:\n{self.log}")
        if not line.startswith(prefix):
            self.stop()
            pytest.fail(f"the server did not start: {line!r}\n{self.log}")
        return line.removeprefix(prefix).strip()

    def handled(self, method: str, code: str) -> float:
        """How many calls of ``method`` (``Service/Method``) the server ended with ``code``, from /metrics."""
        service, _, name = method.rpartition("/")
        text = httpx.get(f"http://{self.metrics_address}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "grpc_server_handled_total"
                    and (labels["grpc_service"], labels["grpc_method"], labels["grpc_code"])
                    == (service, name, code)
                    and labels["transport"] == "grpc"
                ):
                    return sample.value
        return 0.0

    def wait_handled(self, method: str, code: str, more_than: float, timeout: float = 30) -> float:
        """Waits (bounded) until more than ``more_than`` calls of ``method`` ended with ``code``."""
        deadline = time.monotonic() + timeout
        while (count := self.handled(method, code)) <= more_than:
            if time.monotonic() > deadline:
                pytest.fail(f"no more {method} calls ended {code} within {timeout} s:\n{self.log}")
            time.sleep(0.05)  # polling a process from outside: there is nothing to await
        return count

    @property
    def log(self) -> str:
        with self._log_changed:
            return "\n".join(self._log)

    def wait_for_log(self, *parts: str, timeout: float = 20) -> str:
        """The first log line containing every one of ``parts``, waiting for it to be written."""

        def find() -> str | None:
            return next((line for line in self._log if all(part in line for part in parts)), None)

        with self._log_changed:
            if not self._log_changed.wait_for(lambda: find() is not None, timeout):
                pytest.fail(f"no server log line with {parts} within {timeout} s:\n" + "\n".join(self._log))
            line = find()
            assert line is not None
            return line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def server_process() -> typing.Iterator[ServerProcess]:
    """The real service in a child process, shared by a module's tests, always stopped."""
    server = ServerProcess()
    try:
        yield server
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log


def cli_env() -> dict[str, str]:
    """The environment of a command line under test: no RILL_* settings leaking in from outside."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RILL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def popen(args: list[str], **kwargs: typing.Any) -> typing.Iterator[subprocess.Popen[str]]:
    """A child process that is killed (if still running) and reaped when the block ends."""
    process = subprocess.Popen(args, cwd=ROOT, env=cli_env(), text=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        process.wait(timeout=10)
