"""A TCP proxy the test owns, between the service and RabbitMQ, to cut connections on demand.

The machine's RabbitMQ is shared by other runs: tests never stop or reconfigure it. They put this
proxy in front of it instead and cut *their own* connections::

    async with TcpProxy("127.0.0.1", 5672) as proxy:
        broker = RabbitMQMessageBroker(f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        ...
        proxy.drop_all()                 # every connection through the proxy is cut
        proxy.refuse_new = True          # new ones are accepted and closed at once
        proxy.hold_replies()             # RabbitMQ's bytes stop reaching the client (confirms too)
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

__all__ = ["TcpProxy"]

CHUNK = 1 << 16


class _Link:
    """One client connection and its upstream twin; two pumps copy bytes between them."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pumps: set[asyncio.Task[None]] = set()

    def cut(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        for writer in (self.client, self.upstream):
            # abort(), not close(): buffered bytes are thrown away, as on a network failure.
            writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port``; ``async with`` starts and stops it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.refuse_new = False
        """While True, new connections are accepted and closed at once (the broker looks down)."""
        self.accepted = 0
        """Connections forwarded so far (refused ones not counted)."""
        self.refused = 0
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._replies_flowing = asyncio.Event()
        self._replies_flowing.set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def active(self) -> int:
        """Connections currently forwarded."""
        return len(self._links)

    async def wait_until(self, predicate: typing.Callable[[TcpProxy], bool], within: float = 10) -> None:
        """Return once ``predicate(self)`` holds (checked on every accept, refusal and disconnect)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def drop_all(self) -> None:
        """Cut every connection going through the proxy, both sides, without a goodbye."""
        for link in list(self._links):
            link.cut()
        self._links.clear()

    def hold_replies(self) -> None:
        """Stop forwarding what RabbitMQ sends (acks included); the client's bytes still go through."""
        self._replies_flowing.clear()

    def release_replies(self) -> None:
        self._replies_flowing.set()

    async def _handle(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.refuse_new:
                self.refused += 1
                client.transport.abort()
                return
            try:
                upstream_reader, upstream = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                client.transport.abort()
                return
            self.accepted += 1
            await self._notify()
            link = _Link(client, upstream)
            self._links.add(link)
            up = asyncio.create_task(self._pump(client_reader, upstream, None))
            down = asyncio.create_task(self._pump(upstream_reader, client, self._replies_flowing))
            link.pumps.update((up, down))
            try:
                await asyncio.wait(link.pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                link.cut()
                self._links.discard(link)
                await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._handlers.discard(task)
            await self._notify()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event | None
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if flowing is not None:
                    await flowing.wait()
                writer.write(data)
                await writer.drain()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
