"""``python -m server --workers 2``: the workers add up (``/metrics``) and agree (the shared store)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
import sys
import time
import typing

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.deploy.processes import REPO, ServerProcess, free_port, running_server
from tests.server.test_workers import _connection_owners

# One channel per call, all open at once: each is its own connection, which the kernel hands to
# either worker (all 16 on one worker: a 2 * 2**-16 chance).
CONNECTIONS = 16
FRESH = [("grpc.use_local_subchannel_pool", 1)]  # else channels to one address share a connection

# Several processes started and stopped on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(300)


@contextlib.asynccontextmanager
async def two_workers(tmp_path: pathlib.Path) -> typing.AsyncIterator[ServerProcess]:
    grpc_port, http_port = free_port(), free_port()
    async with running_server(
        "--address",
        f"127.0.0.1:{grpc_port}",
        "--http-address",
        f"127.0.0.1:{http_port}",
        "--workers",
        "2",
        log=tmp_path / "server.log",
        # The default store (tests/conftest.py makes it "memory"): SQLite in the state dir, shared by both.
        env={"RILL_DATABASE_URL": "", "RILL_STATE_DIR": str(tmp_path / "state")},
        workers=2,
        http=True,
    ) as server:
        assert len(set(server.worker_pids)) == 2
        yield server


async def _process(address: str, order_ids: list[str]) -> grpc.aio.Channel:
    """ProcessOrders on a fresh connection, left open (so that every call of a batch has its own)."""
    channel = grpc.aio.insecure_channel(address, options=FRESH)
    call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=order_ids)
    )
    assert [result.order_id async for result in call] == order_ids
    return channel


async def _sse_process(http_address: str, order_ids: list[str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://{http_address}") as http:  # a connection of its own
        response = await http.post("/v1/orders:process", json={"order_ids": order_ids})
        assert response.status_code == 200
        assert response.text.count("event: progress") == len(order_ids)


async def _scrape(http_address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape over a fresh connection (so either worker may answer it): value per sample."""
    async with httpx.AsyncClient(base_url=f"http://{http_address}") as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _rpc(name: str, transport: str, method: str = "ProcessOrders") -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {
        "grpc_method": method,
        "grpc_service": "orders.v1.OrderService",
        "grpc_type": "server_stream" if method == "ProcessOrders" else "unary",
        "transport": transport,
    }
    return name, tuple(sorted(labels.items()))


async def test_metrics_are_the_sum_over_workers(tmp_path: pathlib.Path) -> None:
    async with two_workers(tmp_path) as server:
        channels = await asyncio.gather(
            *(_process(server.address, [f"g{n}-a", f"g{n}-b", f"g{n}-c"]) for n in range(CONNECTIONS))
        )
        try:
            owners = _connection_owners(int(server.address.rpartition(":")[2]), server.worker_pids)
        finally:
            await asyncio.gather(*(channel.close(None) for channel in channels))
        assert all(owners.values()), f"both workers served calls: connections per pid {owners}"
        await asyncio.gather(*(_sse_process(server.http_address, [f"h{n}"]) for n in range(6)))

        expected = {
            _rpc("grpc_server_started_total", "grpc"): CONNECTIONS,
            _rpc("grpc_server_msg_sent_total", "grpc"): 3 * CONNECTIONS,
            _rpc("grpc_server_handling_seconds_count", "grpc"): CONNECTIONS,
            _rpc("grpc_server_started_total", "http"): 6,
            _rpc("grpc_server_msg_sent_total", "http"): 6,
            _rpc("rill_server_in_flight", "grpc"): 0,
            ("rill_mediator_items_total", (("mediator", "orders"), ("request", "ProcessOrdersCommand"))): (
                3 * CONNECTIONS + 6
            ),
        }

        def seen(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[typing.Any, float]:
            return {key: scraped.get(key, -1) for key in expected}

        # The other worker's counts reach the files within its copy interval (1 s): wait for them,
        # then every further scrape, whichever worker answers it, reports the same sums.
        deadline = time.monotonic() + 20
        while (scraped := seen(await _scrape(server.http_address))) != expected:
            assert time.monotonic() < deadline, f"{scraped} != {expected}"
            await asyncio.sleep(0.2)  # polling the scrape endpoint: nothing else tells us
        for _ in range(8):
            assert seen(await _scrape(server.http_address)) == expected


async def _get_order(address: str, order_id: str) -> bool:
    """GetOrder on a connection of its own: whether the order was found."""
    async with grpc.aio.insecure_channel(address, options=FRESH) as channel:
        try:
            await orders_pb2_grpc.OrderServiceStub(channel).GetOrder(
                orders_pb2.GetOrderRequest(order_id=order_id)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False
        return True


async def _http_get_order(http_address: str, order_id: str) -> bool:
    async with httpx.AsyncClient(base_url=f"http://{http_address}") as http:  # a connection of its own
        response = await http.get(f"/v1/orders/{order_id}")
        assert response.status_code in (200, 404), response.text
        return response.status_code == 200


async def test_any_worker_finds_what_any_worker_processed(tmp_path: pathlib.Path) -> None:
    async with two_workers(tmp_path) as server:
        # gRPC: 10 orders, each on a connection of its own (so both workers process some), then 10
        # GetOrder calls per order, each on a connection of its own (so both workers answer).
        ids = [f"g{n}" for n in range(10)]
        channels = await asyncio.gather(*(_process(server.address, [order_id]) for order_id in ids))
        try:
            owners = _connection_owners(int(server.address.rpartition(":")[2]), server.worker_pids)
        finally:
            await asyncio.gather(*(channel.close(None) for channel in channels))
        assert all(owners.values()), f"both workers processed orders: connections per pid {owners}"
        found = await asyncio.gather(*(_get_order(server.address, order_id) for order_id in ids * 10))
        assert sum(found) == 100

        # HTTP: the same, through the edge every worker serves.
        ids = [f"h{n}" for n in range(10)]
        async with contextlib.AsyncExitStack() as clients:
            https = [
                await clients.enter_async_context(httpx.AsyncClient(base_url=f"http://{server.http_address}"))
                for _ in ids
            ]
            for http, order_id in zip(https, ids, strict=True):
                response = await http.post("/v1/orders:process", json={"order_ids": [order_id]})
                assert response.text.count("event: progress") == 1
            owners = _connection_owners(int(server.http_address.rpartition(":")[2]), server.worker_pids)
        assert all(owners.values()), f"both workers processed orders: connections per pid {owners}"
        found = await asyncio.gather(
            *(_http_get_order(server.http_address, order_id) for order_id in ids * 10)
        )
        assert sum(found) == 100


async def test_workers_need_every_port_free(tmp_path: pathlib.Path) -> None:
    # Every worker serves the HTTP edge on a shared port: one taken by anything else is refused at start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_address = f"127.0.0.1:{taken.getsockname()[1]}"
        with (tmp_path / "server.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server",
                "--address",
                f"127.0.0.1:{free_port()}",
                "--http-address",
                http_address,
                "--workers",
                "2",
                cwd=REPO,
                stderr=log,
            )
            assert await asyncio.wait_for(process.wait(), timeout=30) == 2
    assert f"cannot listen on {http_address}" in (tmp_path / "server.log").read_text()
