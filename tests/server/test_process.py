"""`python -m server` as a process: it starts, serves, and on SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
import typing

import grpc
import pytest
from grpc_health.v1 import health_pb2

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.typed_grpc import health_stub, read, read_or_none

REPO = pathlib.Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, address: str) -> None:
        self.process = process
        self.address = address


async def spawn_server(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`python -m server` on a free port, HTTP edge off, with ``args`` and ``env`` added."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "--address",
        "127.0.0.1:0",
        "--http-address",
        "",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def start_server(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    process = await spawn_server(*args, env=env)
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
    if not line.startswith("listening on "):
        process.kill()
        _, err = await process.communicate()
        pytest.fail(f"server did not start: {line!r} {err.decode()}")
    return ServerProcess(process, line.removeprefix("listening on ").strip())


@pytest.fixture
async def server_process(tmp_path: pathlib.Path) -> typing.AsyncIterator[ServerProcess]:
    config = tmp_path / "rill.toml"
    config.write_text("grace_period = 5.0\n[orders]\nmax_concurrent_event_handlers = 3\n")
    started = await start_server("--config", str(config))
    try:
        yield started
    finally:
        if started.process.returncode is None:
            started.process.kill()
            await started.process.wait()


async def test_sigterm_drains_and_exits_zero(server_process: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(server_process.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        ids = [f"o{i}" for i in range(200)]
        call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
        assert (await read(call)).order_id == "o0"
        server_process.process.send_signal(signal.SIGTERM)
        received = ["o0"]
        while (result := await read_or_none(call)) is not None:
            received.append(result.order_id)
        assert received == ids, "a stream that finishes within the grace period ends OK and complete"
        assert await call.code() == grpc.StatusCode.OK
    _, stderr = await asyncio.wait_for(server_process.process.communicate(), timeout=30)
    assert server_process.process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "orders: max_concurrent_event_handlers=3" in log
    assert "signal received: shutting down" in log
    assert "stopped" in log


async def test_health_is_serving_from_the_process(server_process: ServerProcess) -> None:
    async with grpc.aio.insecure_channel(server_process.address) as channel:
        response = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"RILL_ORDERS__MAX_CONCURRENT_EVENT_HANDLERS": "0"}, "max_concurrent_event_handlers"),
        (("--config", "/nonexistent/rill.toml"), {}, "config file /nonexistent/rill.toml does not exist"),
        ((), {"RILL_STORAGE_ROOT": "/nonexistent/storage"}, "/nonexistent/storage"),
    ],
)
async def test_bad_configuration_is_a_clear_error(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    process = await spawn_server(*args, env=env)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    text = stderr.decode()
    assert "cannot start" in text
    assert message in text
    assert "Traceback" not in text


async def test_a_bad_setting_names_where_its_value_came_from(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "rill.toml"
    config.write_text("[orders]\nmax_concurrent_event_handlers = 0\n")
    process = await spawn_server("--config", str(config), env={"RILL_GRACE_PERIOD": "soon"})
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    text = stderr.decode()

    assert process.returncode == 2
    assert "2 validation errors for rill settings" in text
    assert "_FromFile" not in text
    assert "(from the environment: RILL_GRACE_PERIOD)" in text
    assert f"(from {config})" in text


async def exit_of(process: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int | None, str]:  # noqa: ASYNC109
    """The exit code and stderr of a process expected to exit by itself; killed if it does not."""
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
    except TimeoutError:
        process.kill()
        _, stderr = await process.communicate()
        return None, f"still running after {timeout:g} s: {stderr.decode()}"
    return process.returncode, stderr.decode()


async def test_a_second_server_on_a_port_in_use_exits_2_naming_the_address(
    server_process: ServerProcess,
) -> None:
    # grpc turns SO_REUSEPORT on by default: the second server used to start and take half the calls.
    second = await spawn_server("--address", server_process.address)
    code, text = await exit_of(second)
    assert code == 2, text
    assert f"cannot start: cannot listen on {server_process.address}" in text
    assert "Traceback" not in text
    async with grpc.aio.insecure_channel(server_process.address) as channel:
        response = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING, "the first server is untouched"


async def test_workers_on_a_port_in_use_exit_2_naming_the_address(server_process: ServerProcess) -> None:
    workers = await spawn_server("--address", server_process.address, "--workers", "2")
    code, text = await exit_of(workers)
    assert code == 2, text
    assert f"cannot start: cannot listen on {server_process.address}" in text
