"""HAProxy in front of two ``python -m server`` replicas: calls are balanced over both, and a replica
leaves the rotation when its gRPC health check stops answering SERVING (dead or draining)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import typing

import grpc
from grpc_health.v1 import health_pb2

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server
from tests.deploy.processes import ServerProcess, running_server
from tests.deploy.proxy import running_proxy
from tests.typed_grpc import read, read_or_none


@contextlib.asynccontextmanager
async def replicas(tmp_path: pathlib.Path, count: int) -> typing.AsyncIterator[list[ServerProcess]]:
    # A long grace period: a draining replica finishes its stream, however slow this machine is.
    env = {"RILL_GRACE_PERIOD": "60"}
    async with contextlib.AsyncExitStack() as stack:
        started = [
            stack.enter_async_context(
                running_server(
                    "--address",
                    "127.0.0.1:0",
                    "--http-address",
                    "",
                    log=tmp_path / f"replica{n}.log",
                    env=env,
                )
            )
            for n in range(count)
        ]
        yield list(await asyncio.gather(*started))


async def _process(address: str, order_ids: list[str]) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
            orders_pb2.ProcessOrdersRequest(order_ids=order_ids)
        )
        return [result.order_id async for result in call]


def _started(server: RillServer) -> int:
    """ProcessOrders calls the in-process ``server`` started (its metrics)."""
    assert server.metrics is not None
    return sum(
        series.started
        for series in server.metrics.calls.values()
        if series.labels.grpc_method == "ProcessOrders"
    )


def _served(replica: ServerProcess) -> int:
    return replica.log.read_text().count("/orders.v1.OrderService/ProcessOrders OK")


async def test_calls_are_balanced_and_a_dead_replica_leaves_the_rotation(tmp_path: pathlib.Path) -> None:
    async with (
        replicas(tmp_path, 2) as (first, second),
        running_proxy([first.address, second.address], tmp_path / "haproxy.log") as proxy,
    ):
        # One connection to the proxy: HAProxy balances its calls one by one, not the connection.
        async with grpc.aio.insecure_channel(proxy.address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            for n in range(8):
                call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=[f"o{n}"]))
                assert [result.order_id async for result in call] == [f"o{n}"]
        assert (_served(first), _served(second)) == (4, 4)

        first.kill()
        await first.process.wait()
        await proxy.wait_replicas({"replica0": False, "replica1": True})
        results = await asyncio.gather(*(_process(proxy.address, [f"p{n}"]) for n in range(6)))
        assert results == [[f"p{n}"] for n in range(6)]
        assert _served(second) == 4 + 6


async def test_a_draining_replica_leaves_the_rotation_before_it_exits(tmp_path: pathlib.Path) -> None:
    async with (
        replicas(tmp_path, 2) as (first, second),
        running_proxy([first.address, second.address], tmp_path / "haproxy.log") as proxy,
    ):
        # A 64 KiB window (no BDP probing): a client that does not read holds the stream in the server,
        # however fast the server produces; with a growing window the 5,000 items could all be sent
        # and the replica exit before the proxy's check saw it draining.
        async with grpc.aio.insecure_channel(first.address, options=[("grpc.http2.bdp_probe", 0)]) as channel:
            # A stream the client does not read yet: the replica is held in its drain by it.
            ids = [f"s{n}" for n in range(5000)]
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            assert (await read(call)).order_id == "s0"
            first.process.send_signal(signal.SIGTERM)
            # Health NOT_SERVING at once: the check takes it out while it still serves the stream.
            await proxy.wait_replicas({"replica0": False, "replica1": True})
            assert first.process.returncode is None
            results = await asyncio.gather(*(_process(proxy.address, [f"p{n}"]) for n in range(4)))
            assert results == [[f"p{n}"] for n in range(4)]
            assert _served(second) == 4
            rest = []
            while (result := await read_or_none(call)) is not None:
                rest.append(result.order_id)
            assert rest == ids[1:], "the draining replica finished its stream"
        assert await first.process.wait() == 0


async def test_the_rotation_follows_the_grpc_health_status(server_settings: Settings) -> None:
    # Listening is not enough: a replica that says NOT_SERVING (while it still accepts connections)
    # gets no calls, and gets them again once it says SERVING.
    async with contextlib.AsyncExitStack() as stack:
        first, second = [await stack.enter_async_context(create_server(server_settings)) for _ in range(2)]
        proxy = await stack.enter_async_context(
            running_proxy([first.address, second.address], server_settings.storage_root / "haproxy.log")
        )
        await first.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await proxy.wait_replicas({"replica0": False, "replica1": True})
        results = await asyncio.gather(*(_process(proxy.address, [f"p{n}"]) for n in range(4)))
        assert results == [[f"p{n}"] for n in range(4)]
        assert (_started(first), _started(second)) == (0, 4)
        await first.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await proxy.wait_replicas({"replica0": True, "replica1": True})
