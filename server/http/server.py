"""uvicorn, run in the gRPC server's own event loop (one process, one loop, the same mediators)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import typing

import uvicorn

from server.http.limits import HttpLimitSettings
from server.http.protocol import guarded_protocol

__all__ = ["HttpServer"]

logger = logging.getLogger("server.http")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> typing.Iterator[None]:
        # The process's signals belong to `python -m server`, which stops gRPC and HTTP together.
        yield


class HttpServer:
    """Serves an ASGI app on ``address`` (bound when constructed, so port 0 is resolved at once)."""

    def __init__(
        self,
        app: typing.Any,
        address: str,
        *,
        limits: HttpLimitSettings | None = None,
        name: str = "HTTP",
        reuse_port: bool = False,
        **uvicorn_options: typing.Any,
    ) -> None:
        """``limits``: the connection limits (:mod:`server.http.protocol`); ``name``: the listener's
        name in the log; ``reuse_port``: share the port with other processes (``--workers``);
        ``uvicorn_options``: more ``uvicorn.Config`` options (``ssl_certfile``, ...)."""
        host, _, port = address.rpartition(":")
        self._socket = socket.create_server((host, int(port)), reuse_port=reuse_port)
        self.port: int = self._socket.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self.name = name
        self.scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
        limits = limits if limits is not None else HttpLimitSettings()
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            http=guarded_protocol(limits, name),
            timeout_keep_alive=limits.keep_alive_timeout,
            **uvicorn_options,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._server.server_state.connections)

    async def start(self) -> None:
        # The socket is listening already: connections made before uvicorn's loop runs just wait.
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="rill-http")
        logger.info("serving %s on %s://%s/", self.name, self.scheme, self.address)

    async def stop(self, grace: float) -> None:
        """Stop accepting; give open streams ``grace`` seconds, then cancel them (they still drain)."""
        if self._task is None:
            self._socket.close()
            return
        self._server.config.timeout_graceful_shutdown = math.ceil(grace)  # uvicorn takes whole seconds
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._task = None
            self._socket.close()
