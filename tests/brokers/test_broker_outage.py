"""RabbitMQ cut mid-stream under overlapped delivery: no delivered item goes un-notified.

Overlapped delivery sends an item before its notification is confirmed. When RabbitMQ becomes
unreachable, the stream ends UNAVAILABLE, and every notification it could not send is kept by the
service's :class:`RetryingMessageBroker` and re-sent once RabbitMQ is back: afterwards each delivered
item's notification is on a queue bound to the exchange (duplicates only under the same
``message_id``).
"""

from __future__ import annotations

import collections
import pathlib

import grpc
import pytest

from mediator.message_brokers.retrying import RetryingMessageBroker
from protos.files.v1 import files_pb2, files_pb2_grpc
from server import Settings, create_server
from server.settings import ServiceSettings
from tests.brokers.consumer import Consumer
from tests.brokers.recording import FAST, RecordingBroker
from tests.brokers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

FILES = 40


@pytest.fixture
def many_files(storage_root: pathlib.Path) -> list[str]:
    (storage_root / "many").mkdir()
    for index in range(FILES):
        (storage_root / "many" / f"{index}.txt").write_text(f"file {index}\n")
    return [f"many/{index}.txt" for index in range(FILES)]


async def test_overlapped_notifications_cut_off_by_a_broker_outage_are_sent_once_it_is_back(
    server_settings: Settings,
    proxy: TcpProxy,
    proxy_url: str,
    exchange_name: str,
    consumer: Consumer,
    many_files: list[str],
) -> None:
    cut_at = 5

    def before_send(count: int) -> None:
        if count == cut_at:  # RabbitMQ goes away while the stream is delivering
            proxy.refuse_new = True
            proxy.drop_all()

    recording = RecordingBroker(proxy_url, exchange_name, before_send=before_send, max_attempts=2, **FAST)
    broker = RetryingMessageBroker(recording, backoff=0.05, max_backoff=0.2)
    settings = server_settings.model_copy(update={"files": ServiceSettings(event_delivery="overlapped")})
    server = create_server(settings, broker=broker)
    await server.start()
    delivered: list[str] = []
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = files_pb2_grpc.FileServiceStub(channel).ProcessFiles(
                files_pb2.ProcessFilesRequest(file_ids=many_files), timeout=30
            )
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for result in call:
                    delivered.append(result.file_id)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert server.calls.active == 0  # the stream and its drain are over
            assert broker.pending > 0  # notifications of delivered items wait for RabbitMQ
            proxy.refuse_new = False  # RabbitMQ is back
            await broker.wait_flushed()
    finally:
        await server.stop(grace=0)

    assert delivered, "the outage began mid-stream"
    received = await consumer.everything()
    ids_by_file: dict[str, set[str | None]] = collections.defaultdict(set)
    for message in received:
        ids_by_file[message.file_id].add(message.message_id)
    missing = [file_id for file_id in delivered if file_id not in ids_by_file]
    assert missing == [], f"{len(missing)} of {len(delivered)} delivered items were never notified"
    assert all(len(ids) == 1 for ids in ids_by_file.values()), "a duplicate only under the same id"
    assert broker.resent >= 1
    assert broker.dropped == 0
