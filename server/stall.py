"""The stall timeout's watch, shared by every transport: one timer per stream, re-armed only when it
fires, rather than a timeout scope around every write (which cost ~8 us per message on gRPC).

The stream sets ``writing_since`` while a write waits for the client; once one has waited
``seconds``, ``on_stall`` is called (once) and ``fired`` is set. What a stall does is the
transport's: the gRPC adapter and the Connect edge cancel the serving task, the SSE edge expires its
stream's scope.
"""

from __future__ import annotations

import asyncio
import time
import typing

__all__ = ["StallTimer"]


class StallTimer:
    """Calls ``on_stall`` when a write has waited ``seconds`` for the client; ``close()`` stops it."""

    __slots__ = ("_handle", "_loop", "_on_stall", "fired", "seconds", "writing_since")

    def __init__(self, seconds: float, on_stall: typing.Callable[[], object]) -> None:
        self.seconds = seconds
        self.writing_since: float | None = None
        self.fired = False
        self._on_stall = on_stall
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(seconds, self._check)

    def _check(self) -> None:
        since = self.writing_since
        waited = 0.0 if since is None else time.monotonic() - since
        if waited >= self.seconds:
            self.fired = True
            self._on_stall()
            return
        self._handle = self._loop.call_later(self.seconds - waited, self._check)

    def close(self) -> None:
        self._handle.cancel()
