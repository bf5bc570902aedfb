"""``python -m server`` with the embedded default store: state survives a restart and a kill -9; a
store that cannot be opened stops the start-up with a clear message and exit code 2."""

from __future__ import annotations

import pathlib
import signal

import grpc

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from tests.server.test_process import exit_of, spawn_server, start_server


def embedded(state_dir: pathlib.Path) -> dict[str, str]:
    """The defaults (the test suite keeps the demo in memory otherwise), in a state dir of the test's."""
    return {"RILL_DATABASE_URL": "", "RILL_STATE_DIR": str(state_dir)}


async def found(address: str, order_ids: list[str]) -> list[str]:
    """The ids GetOrder finds, on a fresh connection."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        hits: list[str] = []
        codes: set[grpc.StatusCode] = set()
        for order_id in order_ids:
            try:
                hits.append((await stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id))).order_id)
            except grpc.aio.AioRpcError as error:
                codes.add(error.code())
        assert codes <= {grpc.StatusCode.NOT_FOUND}
        return hits


async def test_orders_survive_a_restart(tmp_path: pathlib.Path) -> None:
    state_dir = tmp_path / "state"
    first = await start_server(env=embedded(state_dir))
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a", "b", "c"]))
            assert [result.order_id async for result in call] == ["a", "b", "c"]
        first.process.send_signal(signal.SIGTERM)
        code, log = await exit_of(first.process)
        assert code == 0, log
    finally:
        if first.process.returncode is None:
            first.process.kill()
            await first.process.wait()
    assert f"state directory {state_dir}" in log, "the start-up log names the state directory"
    assert (state_dir / "rill.db").is_file()
    second = await start_server(env=embedded(state_dir))
    try:
        assert await found(second.address, ["a", "b", "c", "never"]) == ["a", "b", "c"]
    finally:
        second.process.kill()
        await second.process.wait()


async def test_every_order_received_before_a_kill_9_is_found_after_the_restart(
    tmp_path: pathlib.Path,
) -> None:
    state_dir = tmp_path / "state"
    ids = [f"o{index}" for index in range(5_000)]
    received: list[str] = []
    ended: list[grpc.StatusCode] = []
    first = await start_server(env=embedded(state_dir))
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=ids))
            try:
                async for result in call:
                    received.append(result.order_id)
                    if len(received) == 300:
                        first.process.send_signal(signal.SIGKILL)  # mid-stream, nothing drained
            except grpc.aio.AioRpcError as error:
                ended.append(error.code())
    finally:
        if first.process.returncode is None:
            first.process.kill()
        await first.process.wait()
    assert first.process.returncode == -signal.SIGKILL
    assert ended == [grpc.StatusCode.UNAVAILABLE]
    assert 300 <= len(received) < len(ids), "the kill did not land mid-stream"
    second = await start_server(env=embedded(state_dir))
    try:
        assert await found(second.address, received) == received, "a delivered order was lost by the kill"
    finally:
        second.process.kill()
        await second.process.wait()


async def test_a_database_that_cannot_be_reached_stops_the_start_with_exit_2(tmp_path: pathlib.Path) -> None:
    url = "postgresql://rill:secret@127.0.0.1:9/rill"  # the discard port: nothing listens
    code, text = await exit_of(await spawn_server(env={"RILL_DATABASE_URL": url}))
    assert code == 2, text
    assert "cannot start: cannot open the store postgresql+asyncpg://rill:***@127.0.0.1:9/rill" in text
    assert "secret" not in text
    assert "Traceback" not in text


async def test_a_bad_database_url_is_refused_with_exit_2(tmp_path: pathlib.Path) -> None:
    code, text = await exit_of(await spawn_server(env={"RILL_DATABASE_URL": "mysql://u:secret@h/db"}))
    assert code == 2, text
    assert "unsupported database 'mysql'" in text
    assert "(from the environment: RILL_DATABASE_URL)" in text
    assert "secret" not in text
    assert "Traceback" not in text


async def test_a_state_dir_that_cannot_be_created_stops_the_start_with_exit_2(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, text = await exit_of(await spawn_server(env=embedded(blocker / "state")))
    assert code == 2, text
    assert "cannot open the store" in text
    assert "Traceback" not in text


async def test_a_migration_is_logged_once(tmp_path: pathlib.Path) -> None:
    state_dir = tmp_path / "state"
    for expected in ("(migrated from empty)", None):
        started = await start_server(env=embedded(state_dir))
        started.process.send_signal(signal.SIGTERM)
        code, log = await exit_of(started.process)
        assert code == 0, log
        assert ("migrated from empty" in log) == (expected is not None), log
        assert "Context impl" not in log, "Alembic's own chatter is quieted"
