"""`python -m server --workers N`: N processes serve one port (SO_REUSEPORT); SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import socket
import sys
import typing

import grpc

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.server.test_process import spawn_server

REPO = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    # Port 0 cannot be shared by several processes: pick a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _connection_owners(port: int, pids: typing.Iterable[int]) -> dict[int, int]:
    """How many established connections to ``port`` each of ``pids`` holds (from /proc)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):  # grpc listens on AF_INET6 sockets, with v4-mapped addresses
        for line in pathlib.Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    owners = {}
    for pid in pids:
        links = {os.readlink(fd) for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir()}
        owners[pid] = sum(f"socket:[{inode}]" in links for inode in inodes)
    return owners


async def _call(channel: grpc.aio.Channel) -> list[str]:
    call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"])
    )
    ids = [result.order_id async for result in call]
    assert await call.code() == grpc.StatusCode.OK
    return ids


async def test_two_workers_share_the_port_and_stop_on_sigterm() -> None:
    address = f"127.0.0.1:{_free_port()}"
    process = await spawn_server("--address", address, "--workers", "2", env={"RILL_BROKER": "devnull"})
    try:
        assert process.stdout is not None
        ready = [(await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode() for _ in range(2)]
        workers: dict[str, int] = {}
        for line in ready:
            match = re.fullmatch(r"listening on (\S+) \(worker (\d), pid (\d+)\)\n", line)
            assert match, ready
            assert match[1] == address
            workers[match[2]] = int(match[3])
        assert sorted(workers) == ["0", "1"]
        assert len(set(workers.values())) == 2
        assert process.pid not in workers.values(), "the supervisor itself serves nothing"

        # One channel per call, all open at once: each is a connection, which the kernel hands to
        # either worker. With 16 of them, both workers get some (all on one: a 2 * 2**-16 chance).
        options = [("grpc.use_local_subchannel_pool", 1)]  # else the channels share one connection
        channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(16)]
        try:
            assert await asyncio.gather(*map(_call, channels)) == [["a", "b"]] * 16
            owners = _connection_owners(int(address.rpartition(":")[2]), workers.values())
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))
        assert sum(owners.values()) == 16, owners
        assert all(owners.values()), f"both workers answered: connections per pid {owners}"

        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    log = stderr.decode()
    assert process.returncode == 0, log
    assert log.count("signal received: shutting down") == 2
    assert "workers exited: 0, 0" in log


async def test_workers_need_a_fixed_port() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "--address",
        "127.0.0.1:0",
        "--workers",
        "2",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "port 0 cannot be shared" in stderr.decode()
