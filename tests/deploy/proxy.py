"""A real L7 gRPC proxy for the tests: Debian's HAProxy 2.6 (``make`` installs it) in front of replicas.

The configuration is the one docs/deploy.md shows: HTTP/2 from the client and to every backend,
requests balanced one by one (round robin: a long stream does not pin a connection's later calls to
its replica), and a gRPC health check of each backend (``grpc.health.v1.Health/Check``, the server as
a whole): a replica is in the rotation only while it answers ``SERVING``, so one that is draining
(``NOT_SERVING`` after SIGTERM) or dead leaves it. HAProxy 2.6 has no gRPC check of its own and its
``http-check send`` cannot carry a gRPC body (every gRPC message starts with a zero byte, which ends
a configuration string), so the check is a ``tcp-check`` that speaks HTTP/2 itself: the connection
preface, a HEADERS frame and a DATA frame with the empty ``HealthCheckRequest``, and it expects the
response message ``status: SERVING`` (:func:`health_check_bytes`). Everything listens on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import signal
import struct
import tempfile
import time
import typing

from tests.deploy.processes import free_port

__all__ = ["HAPROXY", "Proxy", "haproxy_config", "health_check_bytes", "running_proxy"]

HAPROXY = "/usr/sbin/haproxy"  # Debian's package (the Makefile installs it as it installs Chromium)

# The response message a SERVING server sends: gRPC's 5-byte prefix (not compressed, length 2) and
# HealthCheckResponse{status: SERVING (1)}, i.e. field 1, varint 1.
SERVING_MESSAGE = bytes.fromhex("00000000020801")


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 section 4.1): 24-bit length, type, flags, stream id."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _header(name: int | str, value: str) -> bytes:
    """An HPACK literal header field without indexing (RFC 7541 6.2.2); a static-table name or a new one."""
    if isinstance(name, int):  # 4-bit prefix: indexes of 15 and more continue in a second byte
        head = bytes((name,)) if name < 15 else bytes((15, name - 15))
    else:
        head = bytes((0, len(name))) + name.encode()
    return head + bytes((len(value),)) + value.encode()


def health_check_bytes() -> bytes:
    """What the check sends: ``POST /grpc.health.v1.Health/Check`` with an empty request, in HTTP/2."""
    headers = (
        b"\x83"  # :method POST (static table index 3)
        + b"\x86"  # :scheme http (6)
        + _header(4, "/grpc.health.v1.Health/Check")  # :path
        + _header(1, "localhost")  # :authority
        + _header(31, "application/grpc")  # content-type
        + _header("te", "trailers")
    )
    return (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # the client connection preface
        + _frame(0x4, 0, 0, b"")  # SETTINGS, none changed
        + _frame(0x1, 0x4, 1, headers)  # HEADERS, END_HEADERS, stream 1
        + _frame(0x0, 0x1, 1, b"\x00\x00\x00\x00\x00")  # DATA, END_STREAM: an empty HealthCheckRequest
    )


def haproxy_config(listen: str, backends: typing.Sequence[str], admin_socket: pathlib.Path) -> str:
    """HAProxy's configuration: gRPC on ``listen``, balanced over ``backends`` (HOST:PORT each)."""
    servers = "\n".join(
        f"    server replica{index} {address} proto h2 check inter 500ms fall 2 rise 1"
        for index, address in enumerate(backends)
    )
    return f"""\
global
    log stderr format raw local0 notice
    stats socket {admin_socket} level admin
    maxconn 2000

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    # A call whose connection to a replica fails goes to another (nothing was sent yet).
    retries 2
    option redispatch 1

frontend grpc
    bind {listen} proto h2
    default_backend replicas

backend replicas
    balance roundrobin
    option tcp-check
    tcp-check connect
    tcp-check send-binary {health_check_bytes().hex()}
    tcp-check expect binary {SERVING_MESSAGE.hex()}
{servers}
"""


class Proxy:
    """A running HAProxy: where it listens, and what it thinks of each replica."""

    def __init__(self, process: asyncio.subprocess.Process, address: str, admin_socket: pathlib.Path) -> None:
        self.process = process
        self.address = address
        self._admin_socket = admin_socket

    async def _admin(self, command: str) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self._admin_socket))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            return (await reader.read()).decode()  # HAProxy closes after one command
        finally:
            writer.close()
            await writer.wait_closed()

    async def replicas_up(self) -> dict[str, bool]:
        """Each replica's state in the rotation (``show servers state``: srv_op_state 2 is running)."""
        lines = (await self._admin("show servers state replicas")).splitlines()
        states = {}
        for line in lines:
            fields = line.split()
            if len(fields) > 5 and fields[1] == "replicas":
                states[fields[3]] = fields[5] == "2"
        return states

    async def wait_replicas(self, expected: dict[str, bool]) -> None:
        """Until the health checks have put the replicas in (or taken them out of) the rotation."""
        deadline = time.monotonic() + 30
        while (states := await self.replicas_up()) != expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas {states}, expected {expected}")
            await asyncio.sleep(0.1)  # polling HAProxy: it tells nobody when a check passes


@contextlib.asynccontextmanager
async def running_proxy(backends: typing.Sequence[str], log: pathlib.Path) -> typing.AsyncIterator[Proxy]:
    """HAProxy in front of ``backends``, from listening with every backend up until the block ends."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="rill-haproxy-"))  # short: a socket path is < 108
    admin_socket = workdir / "admin.sock"
    config = workdir / "haproxy.cfg"
    address = f"127.0.0.1:{free_port()}"
    config.write_text(haproxy_config(address, backends, admin_socket))
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            HAPROXY,
            "-f",
            str(config),
            "-db",
            stdout=stderr,
            stderr=stderr,  # -db: foreground
        )
    proxy = Proxy(process, address, admin_socket)
    try:
        deadline = time.monotonic() + 30
        while not admin_socket.exists():  # bound (and listening) before it opens the admin socket
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: see {log}")
            await asyncio.sleep(0.05)
        await proxy.wait_replicas({f"replica{index}": True for index in range(len(backends))})
        yield proxy
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)  # hard stop: open streams are cut
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
