"""The real service publishing its notifications to the real RabbitMQ, with connections cut under it.

The server runs in-process on a free port with a :class:`RecordingBroker` (the real RabbitMQ broker
noting what it claimed sent) connected through the test's proxy; a consumer bound to the exchange
sees what subscribers would. Delivery is strict (the default): an item reaches the client only
after its notification was confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import pathlib
import signal
import sys
import typing

import grpc
import pytest

from mediator.exceptions import BrokerUnavailable
from mediator.message_brokers.rabbitmq import RabbitMQMessageBroker
from mediator.message_brokers.retrying import RetryingMessageBroker
from protos.files.v1 import files_pb2, files_pb2_grpc
from server import RillServer, Settings, create_server
from tests.brokers.consumer import Consumer, Received
from tests.brokers.recording import FAST, RecordingBroker
from tests.brokers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def file_ids(storage_root: pathlib.Path) -> list[str]:
    """Eight small files in the test's own copy of the storage."""
    (storage_root / "batch").mkdir()
    ids = []
    for index in range(8):
        (storage_root / "batch" / f"{index}.txt").write_text(f"file number {index}\n")
        ids.append(f"batch/{index}.txt")
    return ids


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, broker: RabbitMQMessageBroker
) -> typing.AsyncIterator[tuple[RillServer, files_pb2_grpc.FileServiceAsyncStub]]:
    server = create_server(settings, broker=broker)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield server, files_pb2_grpc.FileServiceStub(channel)
    finally:
        await server.stop(grace=0)  # closes the broker


def request_for(file_ids: list[str]) -> files_pb2.ProcessFilesRequest:
    return files_pb2.ProcessFilesRequest(file_ids=file_ids)


def ids_of(received: list[Received]) -> list[str]:
    return [r.file_id for r in received]


def assert_claimed_only_what_arrived(broker: RecordingBroker, received: list[Received]) -> None:
    """Every notification the broker reported sent is on the consumer's queue."""
    arrived = {r.message_id for r in received}
    claimed = [str(m.message_id) for m in broker.confirmed]
    assert len(set(claimed)) == len(claimed)
    assert set(claimed) <= arrived, "a notification was reported sent that RabbitMQ never received"


async def test_a_consumer_receives_exactly_the_notifications_of_a_stream_in_order(
    server_settings: Settings, proxy_url: str, exchange_name: str, consumer: Consumer, file_ids: list[str]
) -> None:
    requested = [*file_ids, "missing.txt"]
    broker = RecordingBroker(proxy_url, exchange_name)
    async with serving(server_settings, broker) as (_, files):
        results = [r async for r in files.ProcessFiles(request_for(requested), timeout=20)]

    received = await consumer.everything()
    assert ids_of(received) == [r.file_id for r in results] == requested
    assert len({r.message_id for r in received}) == len(received), "ids are unique"
    assert [r.message_id for r in received] == [str(m.message_id) for m in broker.confirmed]
    for result, got in zip(results, received, strict=True):
        envelope = got.envelope
        assert set(envelope) == {"message_id", "message_name", "topic", "occurred_at", "payload"}
        assert envelope["message_id"] == got.message_id
        assert envelope["message_name"] == got.type == "FileProcessedNotification"
        assert envelope["topic"] == got.routing_key == "files.processed"
        assert envelope["payload"] == {
            "file_id": result.file_id,
            "status": result.status,
            "size_bytes": result.size_bytes,
            "sha256": result.sha256,
        }
        occurred_at = datetime.datetime.fromisoformat(envelope["occurred_at"])
        processed_at = result.processed_at.ToDatetime(tzinfo=datetime.UTC)
        assert datetime.timedelta(0) <= processed_at - occurred_at < datetime.timedelta(seconds=5)
    assert received[-1].envelope["payload"]["status"] == "not_found"


async def test_a_connection_cut_between_two_streams_is_re_established(
    server_settings: Settings,
    proxy: TcpProxy,
    proxy_url: str,
    exchange_name: str,
    consumer: Consumer,
    file_ids: list[str],
) -> None:
    broker = RecordingBroker(proxy_url, exchange_name, **FAST)
    async with serving(server_settings, broker) as (_, files):
        first = [r.file_id async for r in files.ProcessFiles(request_for(file_ids[:4]), timeout=20)]
        proxy.drop_all()
        second = [r.file_id async for r in files.ProcessFiles(request_for(file_ids[4:]), timeout=20)]

    assert first + second == file_ids
    received = await consumer.everything()
    assert ids_of(received) == file_ids
    assert proxy.accepted == 2, "the broker reconnected once"
    assert_claimed_only_what_arrived(broker, received)


async def test_a_connection_cut_mid_stream_is_re_established_and_the_stream_completes(
    server_settings: Settings,
    proxy: TcpProxy,
    proxy_url: str,
    exchange_name: str,
    consumer: Consumer,
    file_ids: list[str],
) -> None:
    def before_send(count: int) -> None:
        if count == 3:
            proxy.hold_replies()  # RabbitMQ gets the third notification; its confirm stays here

    broker = RecordingBroker(proxy_url, exchange_name, before_send=before_send, **FAST)
    async with serving(server_settings, broker) as (_, files):
        call = files.ProcessFiles(request_for(file_ids), timeout=20)
        delivered = []
        async for result in call:
            delivered.append(result.file_id)
            if len(delivered) == 2:
                await consumer.wait_for(3)
                proxy.drop_all()  # the third is in flight: taken by RabbitMQ, not confirmed
                proxy.release_replies()
        assert await call.code() == grpc.StatusCode.OK

    assert delivered == file_ids
    received = await consumer.everything()
    # At least once: the unconfirmed third was published again on the new connection.
    assert ids_of(received) == [*file_ids[:3], file_ids[2], *file_ids[3:]]
    assert received[2].message_id == received[3].message_id
    assert [str(m.message_id) for m in broker.confirmed] == list(
        dict.fromkeys(r.message_id for r in received)
    )
    assert_claimed_only_what_arrived(broker, received)
    assert proxy.accepted == 2


async def test_a_connection_cut_mid_stream_for_good_ends_it_unavailable_claiming_only_confirmed(
    caplog: pytest.LogCaptureFixture,
    server_settings: Settings,
    proxy: TcpProxy,
    proxy_url: str,
    exchange_name: str,
    consumer: Consumer,
    file_ids: list[str],
) -> None:
    def before_send(count: int) -> None:
        if count == 3:
            proxy.hold_replies()

    broker = RecordingBroker(proxy_url, exchange_name, before_send=before_send, max_attempts=4, **FAST)
    delivered: list[str] = []
    async with serving(server_settings, broker) as (_, files):
        call = files.ProcessFiles(request_for(file_ids), timeout=20)
        await consumer.wait_for(3)
        proxy.refuse_new = True  # RabbitMQ is gone for the service from now on
        proxy.drop_all()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for result in call:
                delivered.append(result.file_id)

    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    details = ended.value.details() or ""
    # The client learns the cause it can act on; the URL, message id and exception go to the log only.
    assert details.startswith("notification broker unavailable (request id "), details
    for internal in ("amqp", "attempts", "Error"):
        assert internal not in details, details
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}"
        for record in caplog.records
        if record.name == "server.calls"
    )
    assert f"RabbitMQ at amqp://guest:******@127.0.0.1:{proxy.port}/ did not confirm" in logged
    assert "after 4 attempts" in logged, logged
    assert "AMQPConnectionError" in logged, logged

    received = await consumer.everything()
    assert ids_of(received) == file_ids[:3], "the third reached RabbitMQ, unconfirmed"
    assert [m.payload["file_id"] for m in broker.confirmed] == file_ids[:2], "only confirmed are claimed"
    assert [m.payload["file_id"] for m, _ in broker.failed] == [file_ids[2]]
    assert delivered == file_ids[:2], "no item is delivered before its notification is confirmed"
    assert_claimed_only_what_arrived(broker, received)


async def test_a_stream_cancelled_while_its_notification_is_retrying_leaves_the_service_working(
    server_settings: Settings,
    proxy: TcpProxy,
    proxy_url: str,
    exchange_name: str,
    consumer: Consumer,
    file_ids: list[str],
) -> None:
    def before_send(count: int) -> None:
        if count == 3:
            proxy.hold_replies()

    broker = RecordingBroker(
        proxy_url, exchange_name, before_send=before_send, max_attempts=1_000, backoff=0.02, max_backoff=0.05
    )
    async with serving(server_settings, broker) as (server, files):
        call = files.ProcessFiles(request_for(file_ids), timeout=20)
        await consumer.wait_for(3)
        proxy.refuse_new = True
        proxy.drop_all()
        await proxy.wait_until(lambda p: p.refused >= 1)  # the third notification is being retried
        call.cancel()
        proxy.release_replies()
        proxy.refuse_new = False  # RabbitMQ is back: the drain of the cancelled stream confirms it
        assert await server.calls.wait_idle(10)
        assert await call.code() == grpc.StatusCode.CANCELLED
        after = [r.file_id async for r in files.ProcessFiles(request_for(file_ids[3:5]), timeout=20)]

    assert after == file_ids[3:5]
    received = await consumer.everything()
    assert [m.payload["file_id"] for m in broker.confirmed] == [*file_ids[:3], *file_ids[3:5]]
    assert ids_of(received) == [*file_ids[:3], file_ids[2], *file_ids[3:5]]
    assert_claimed_only_what_arrived(broker, received)


async def test_an_unreachable_broker_fails_the_start_up_naming_the_url(
    storage_root: pathlib.Path, proxy: TcpProxy
) -> None:
    proxy.refuse_new = True
    settings = Settings(
        address="127.0.0.1:0",
        http_address="",
        storage_root=storage_root,
        broker=f"amqp://guest:pw@127.0.0.1:{proxy.port}/",
    )
    server = create_server(settings)
    assert isinstance(server.broker, RetryingMessageBroker)
    assert isinstance(server.broker.inner, RabbitMQMessageBroker)
    with pytest.raises(BrokerUnavailable) as raised:
        await server.start()
    assert f"cannot connect to RabbitMQ at amqp://guest:******@127.0.0.1:{proxy.port}/" in str(raised.value)
    await server.stop(grace=0)


async def run_server(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
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
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_python_m_server_with_an_unreachable_broker_says_so_in_one_line(proxy: TcpProxy) -> None:
    proxy.refuse_new = True
    process = await run_server(env={"RILL_BROKER": f"amqp://guest:s3cret-pw@127.0.0.1:{proxy.port}/"})
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    text = stderr.decode()
    assert process.returncode == 2, text
    url = f"amqp://guest:******@127.0.0.1:{proxy.port}/"
    assert f"rill server: cannot start: cannot connect to RabbitMQ at {url}: " in text
    assert "Traceback" not in text
    assert "s3cret-pw" not in text


async def test_python_m_server_publishes_to_the_broker_rill_broker_names(
    rabbitmq: str, exchange_name: str, consumer: Consumer
) -> None:
    process = await run_server(env={"RILL_BROKER": f"{rabbitmq}?exchange={exchange_name}"})
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on "), line
        address = line.removeprefix("listening on ").strip()
        async with grpc.aio.insecure_channel(address) as channel:
            files = files_pb2_grpc.FileServiceStub(channel)
            requested = ["hello.txt", "large.bin", "reports/2026-q3.csv"]
            results = [r.file_id async for r in files.ProcessFiles(request_for(requested), timeout=20)]
        assert results == requested
        assert ids_of(await consumer.everything()) == results
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert (
            f"connected to RabbitMQ at amqp://guest:******@127.0.0.1:5672/, exchange '{exchange_name}'"
            in (stderr.decode())
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
