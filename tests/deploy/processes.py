"""``python -m server`` as the operator runs it: a process (or a supervisor of workers), ready when it
has printed where it listens, stopped with SIGTERM (or killed) by the test that started it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import signal
import socket
import sys
import typing

REPO = pathlib.Path(__file__).resolve().parents[2]

_LISTENING = re.compile(r"listening on (\S+)(?: \(worker (\d+), pid (\d+)\))?")


def free_port() -> int:
    """A free loopback port (for what must be fixed before it is bound: ``--workers``, the proxy)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A started ``python -m server``: its gRPC and HTTP addresses, and its workers' pids."""

    def __init__(self, process: asyncio.subprocess.Process, log: pathlib.Path) -> None:
        self.process = process
        self.log = log
        """Its stderr (a file: a pipe nobody reads would block the server once full)."""
        self.address = ""
        self.http_address = ""
        self.worker_pids: list[int] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_listening(self, workers: int, *, http: bool) -> None:
        """Read the start-up lines: one ``listening on`` (and ``http on``) per worker."""
        assert self.process.stdout is not None
        seen = 0
        while seen < workers * (2 if http else 1):
            line = (await asyncio.wait_for(self.process.stdout.readline(), timeout=60)).decode()
            if not line:
                await self.process.wait()
                raise RuntimeError(f"the server exited before listening: {self.log.read_text()}")
            if match := _LISTENING.match(line):
                self.address = match[1]
                if match[3]:
                    self.worker_pids.append(int(match[3]))
                seen += 1
            elif line.startswith("http on "):
                self.http_address = line.removeprefix("http on ").strip()
                seen += 1

    def kill(self) -> None:
        """SIGKILL: nothing is drained, nothing is flushed (a crash)."""
        if self.process.returncode is None:
            self.process.kill()

    async def stop(self) -> int:
        """SIGTERM, wait for the exit (killed if it takes longer than 30 s); the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.communicate(), timeout=30)
        except TimeoutError:
            self.process.kill()
            await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def running_server(
    *args: str,
    log: pathlib.Path,
    env: typing.Mapping[str, str] | None = None,
    workers: int = 1,
    http: bool = False,
) -> typing.AsyncIterator[ServerProcess]:
    """``python -m server *args`` until the block ends (then SIGTERM; killed if it will not stop);
    its stderr goes to ``log``."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            *args,
            cwd=REPO,
            env={**os.environ, "RILL_BROKER": "devnull", **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    server = ServerProcess(process, log)
    try:
        await server.wait_listening(workers, http=http)
        yield server
    finally:
        await server.stop()
