"""Databases, brokers and rows for the outbox relay's tests.

PostgreSQL: the machine's (127.0.0.1:5432, user postgres, trust); each test creates its own database
with a random name and drops it afterwards. SQLite: a file in the test's ``tmp_path``. RabbitMQ: the
machine's, through a TCP proxy the test owns (:mod:`tests.brokers.tcp_proxy`), and a consumer on
an exchange of the test's own (:mod:`tests.brokers.consumer`), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import pathlib
import socket
import typing
import uuid

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from mediator.exceptions import BrokerError
from mediator.message_brokers.protocol import Message
from server.store.outbox_settings import OutboxSettings
from server.store.schema import outbox
from server.store.store import Store
from tests.brokers.conftest import RABBITMQ_HOST, RABBITMQ_PORT, RABBITMQ_URL
from tests.brokers.tcp_proxy import TcpProxy

__all__ = [
    "POSTGRES_DSN",
    "TOPIC",
    "FakeBroker",
    "database_url_fixture",
    "exchange_name_fixture",
    "fast_settings",
    "postgres_database_fixture",
    "proxy_fixture",
    "rabbitmq_fixture",
    "rows_by_state",
    "sqlite_url",
    "stage",
    "store_fixture",
    "temporary_postgres",
]

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TOPIC = "outbox.test"


def fast_settings(**changes: typing.Any) -> OutboxSettings:
    """Settings whose retries come close together, so that giving up does not keep a test waiting."""
    values: dict[str, typing.Any] = {
        "poll_interval": 0.05,
        "batch_size": 10,
        "max_attempts": 3,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "publish_timeout": 5.0,
        **changes,
    }
    return OutboxSettings(**values)


class temporary_postgres:  # used like a function: `async with temporary_postgres() as url`
    """A database of its own on the machine's PostgreSQL, its URL, dropped on exit."""

    def __init__(self) -> None:
        self.name = f"rill_test_{uuid.uuid4().hex}"

    async def __aenter__(self) -> str:
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()
        return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.name}"

    async def __aexit__(self, *exc_info: object) -> None:
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(name="postgres_database")
async def postgres_database_fixture() -> typing.AsyncIterator[str]:
    async with temporary_postgres() as url:
        yield url


@pytest.fixture(name="rabbitmq", scope="session")
def rabbitmq_fixture() -> str:
    """The machine's RabbitMQ (its absence fails the test: these tests are about it)."""
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=3):
            pass
    except OSError as error:
        pytest.fail(f"no RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} ({error}): these tests need it")
    return RABBITMQ_URL


@pytest.fixture(name="exchange_name")
def exchange_name_fixture() -> str:
    return f"rill.test.outbox.{uuid.uuid4().hex}"


@pytest.fixture(name="proxy")
async def proxy_fixture(rabbitmq: str) -> typing.AsyncIterator[TcpProxy]:
    """A proxy to RabbitMQ the test may cut (the relay's broker connects through it)."""
    async with TcpProxy(RABBITMQ_HOST, RABBITMQ_PORT) as proxy:
        yield proxy


def sqlite_url(path: pathlib.Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(name="database_url", params=["sqlite", "postgresql"])
async def database_url_fixture(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> typing.AsyncIterator[str]:
    """Each test that takes it runs twice: on an SQLite file, and on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "rill.db")
        return
    async with temporary_postgres() as url:
        yield url


@pytest.fixture(name="store")
async def store_fixture(database_url: str) -> typing.AsyncIterator[Store]:
    """The store on ``database_url``, migrated as the server migrates it."""
    async with Store(make_url(database_url)) as opened:
        yield opened


async def stage(
    engine: AsyncEngine,
    count: int,
    *,
    topic: str = TOPIC,
    start: int = 0,
    age: float = 1.0,
    due_in: float | None = None,
) -> list[uuid.UUID]:
    """``count`` pending rows, as the store's outbox stages them, written ``age`` seconds ago one
    millisecond apart (``start`` ms on), due then (or ``due_in`` seconds from now); their ids in order."""
    now = datetime.datetime.now(datetime.UTC)
    base = now - datetime.timedelta(seconds=age)
    rows = []
    for index in range(start, start + count):
        at = base + datetime.timedelta(milliseconds=index)
        rows.append(
            {
                "message_id": uuid.uuid4(),
                "message_name": "OutboxTestEvent",
                "topic": topic,
                "occurred_at": at,
                "payload": {"index": index},
                "created_at": at,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": at if due_in is None else now + datetime.timedelta(seconds=due_in),
            }
        )
    async with engine.begin() as connection:
        await connection.execute(sa.insert(outbox), rows)
    return [typing.cast(uuid.UUID, row["message_id"]) for row in rows]


async def rows_by_state(engine: AsyncEngine) -> dict[str, list[sa.RowMapping]]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(outbox).order_by(outbox.c.created_at))
        found: dict[str, list[sa.RowMapping]] = {}
        for row in result.mappings():
            found.setdefault(row["state"], []).append(row)
        return found


@dataclasses.dataclass
class FakeBroker:
    """Records what it was sent; refuses the ids in ``refused``; ``gate`` holds every send while clear."""

    refused: set[uuid.UUID] = dataclasses.field(default_factory=set)
    sent: list[Message] = dataclasses.field(default_factory=list)
    started_sends: int = 0
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    sending: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set once a send is in flight."""

    def __post_init__(self) -> None:
        self.gate.set()

    async def send_message(self, message: Message) -> None:
        self.started_sends += 1
        self.sending.set()
        await self.gate.wait()
        if message.message_id in self.refused:
            raise BrokerError(f"refused {message.message_id}")
        self.sent.append(message)

    async def aclose(self) -> None:
        pass
