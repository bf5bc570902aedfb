"""A raw HTTP/2 client (the ``h2`` state machine over an asyncio socket): what an attacker sends.

grpc's own clients queue streams beyond the server's limit and validate metadata, so the attacks
of issue 15 (streams that never send their message, non-UTF-8 metadata) need frames sent by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import typing

import h2.config
import h2.connection
import h2.events
import h2.settings

__all__ = ["RawH2", "grpc_frame"]


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (not compressed)."""
    return struct.pack(">?I", False, len(message)) + message


class RawH2:
    """One HTTP/2 connection to a gRPC server; ``events`` collects everything the server sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[h2.events.Event] = []
        self.remote_settings: dict[int, int] = {}
        self._changed = asyncio.Event()

    @classmethod
    async def connect(cls, address: str) -> RawH2:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        raw = cls(reader, writer)
        raw._h2.initiate_connection()
        await raw.flush()
        return raw

    async def flush(self) -> None:
        self._writer.write(self._h2.data_to_send())
        await self._writer.drain()

    def headers(
        self, path: str, metadata: typing.Sequence[tuple[bytes, bytes]] = ()
    ) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *metadata,
        ]

    def open_stream(
        self, path: str, *, metadata: typing.Sequence[tuple[bytes, bytes]] = (), body: bytes | None = None
    ) -> int:
        """Send HEADERS (and, with ``body``, the message and END_STREAM); the stream's id."""
        stream_id = self._h2.get_next_available_stream_id()
        self._h2.send_headers(stream_id, self.headers(path, metadata), end_stream=False)
        if body is not None:
            self._h2.send_data(stream_id, grpc_frame(body), end_stream=True)
        return stream_id

    def end_stream(self, stream_id: int) -> None:
        """Half-close a stream (END_STREAM), whether or not its message was sent."""
        self._h2.end_stream(stream_id)

    async def read_until(
        self,
        done: typing.Callable[[RawH2], bool],
        timeout: float,  # noqa: ASYNC109 - a bound on a test
    ) -> None:
        """Read frames until ``done(self)`` holds; TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not done(self):
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                for event in self._h2.receive_data(data):
                    self.events.append(event)
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        for key, setting in event.changed_settings.items():
                            self.remote_settings[int(key)] = setting.new_value
                    if isinstance(event, h2.events.DataReceived):
                        self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await self.flush()

    def ended(self) -> dict[int, h2.events.Event]:
        """Streams the server ended (trailers or RST_STREAM), by id."""
        return {
            event.stream_id: event
            for event in self.events
            if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset)
            and event.stream_id is not None
        }

    def grpc_status(self, stream_id: int) -> tuple[int, str] | None:
        """``(grpc-status, grpc-message)`` of a stream's headers or trailers, if sent."""
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived) and (
                event.stream_id == stream_id
            ):
                fields = {bytes(k): bytes(v) for k, v in event.headers or ()}
                if b"grpc-status" in fields:
                    return int(fields[b"grpc-status"]), fields.get(b"grpc-message", b"").decode()
        return None

    @property
    def max_concurrent_streams(self) -> int | None:
        return self.remote_settings.get(int(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS))

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
