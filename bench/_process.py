"""A ``bench._rill_server`` process, driven from a benchmark: start, ask for stats, stop."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import typing

REPO = pathlib.Path(__file__).resolve().parents[1]


class RillProcess:
    """The real service in a child process on 127.0.0.1:<free port>; always stopped by ``async with``."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self.address = ""
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> RillProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench._rill_server",
            *self._args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        line = (await asyncio.wait_for(self._readline(), timeout=30)).strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the server did not start: {line!r}")
        self.address = line.removeprefix("listening on ")
        return self

    async def _readline(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        return (await self._process.stdout.readline()).decode()

    async def stats(self) -> dict[str, typing.Any]:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(b"stats\n")
        await self._process.stdin.drain()
        return typing.cast(dict[str, typing.Any], json.loads(await asyncio.wait_for(self._readline(), 30)))

    async def stop(self) -> dict[str, typing.Any]:
        """Stop the server; its final stats."""
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(b"stop\n")
        await self._process.stdin.drain()
        final = json.loads(await asyncio.wait_for(self._readline(), 60))
        await asyncio.wait_for(self._process.wait(), 30)
        return typing.cast(dict[str, typing.Any], final)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
