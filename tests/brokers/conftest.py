"""Fixtures for the broker tests: the machine's real RabbitMQ, a proxy in front of it, a consumer.

RabbitMQ is shared with other runs: every test declares its own exchange (``rill.test.<uuid>``) and
deletes it, its queues are exclusive and auto-deleted, and connections are cut only at the test's
own proxy. When RabbitMQ is not reachable these tests fail if ``CI`` is set and skip otherwise.
"""

from __future__ import annotations

import os
import socket
import typing
import uuid

import pytest

from tests.brokers.consumer import Consumer
from tests.brokers.tcp_proxy import TcpProxy

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The URL of the real RabbitMQ; fails (in CI) or skips (elsewhere) when it is not there."""
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=3):
            pass
    except OSError as error:
        reason = (
            f"no RabbitMQ reachable at {RABBITMQ_HOST}:{RABBITMQ_PORT} ({error}); "
            "the broker tests need a real one (user guest, password guest)"
        )
        if _in_ci():
            pytest.fail(f"{reason}. CI is set: a missing broker fails the run", pytrace=False)
        pytest.skip(f"{reason}. Start RabbitMQ to run them (in CI they fail instead of skipping)")
    return RABBITMQ_URL


@pytest.fixture
def exchange_name() -> str:
    return f"rill.test.{uuid.uuid4().hex}"


@pytest.fixture
async def proxy(rabbitmq: str) -> typing.AsyncIterator[TcpProxy]:
    """A proxy to RabbitMQ that the test may cut; the broker under test connects through it."""
    async with TcpProxy(RABBITMQ_HOST, RABBITMQ_PORT) as proxy:
        yield proxy


@pytest.fixture
def proxy_url(proxy: TcpProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/"


@pytest.fixture
async def consumer(rabbitmq: str, exchange_name: str) -> typing.AsyncIterator[Consumer]:
    """Bound to ``exchange_name`` for ``files.processed``, before anything is published."""
    async with Consumer(rabbitmq, exchange_name, "files.processed") as consumer:
        yield consumer
