"""``python -m server outbox list|replay``, run as a process against the store the settings name."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import sys
import uuid

import pytest
import sqlalchemy as sa

from mediator.message_brokers.rabbitmq import RabbitMQMessageBroker
from server.store.relay import OutboxRelay
from server.store.schema import outbox
from server.store.store import Store
from tests.brokers.consumer import Consumer
from tests.brokers.tcp_proxy import TcpProxy
from tests.client.conftest import ROOT, cli_env
from tests.store.outbox_fixtures import (  # noqa: F401 - the *_fixture names are pytest fixtures
    TOPIC,
    database_url_fixture,
    exchange_name_fixture,
    fast_settings,
    proxy_fixture,
    rabbitmq_fixture,
    rows_by_state,
    stage,
    store_fixture,
)

WITHIN = 30


async def outbox_command(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``python -m server outbox ARGS`` with ``env`` (and no other RILL_ settings): status, out, err."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "outbox",
        *args,
        cwd=ROOT,
        env={**cli_env(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def settings_env(store: Store, database_url: str) -> dict[str, str]:
    """What a user sets to point the command at ``store``: the state directory for the embedded
    default (the file is ``<state_dir>/rill.db``), the URL for PostgreSQL."""
    if store.embedded:
        return {"RILL_STATE_DIR": str(pathlib.Path(store.url.database or "").parent)}
    return {"RILL_DATABASE_URL": database_url}


async def test_list_shows_a_dead_row_and_replay_republishes_it(
    store: Store, database_url: str, proxy: TcpProxy, rabbitmq: str, exchange_name: str
) -> None:
    env = settings_env(store, database_url)
    proxy.refuse_new = True  # RabbitMQ looks down
    [dead_id] = await stage(store.engine, 1, age=3 * 3600)  # written three hours ago
    [published_id] = await stage(store.engine, 1, start=10)
    async with (
        Consumer(rabbitmq, exchange_name, TOPIC) as consumer,
        contextlib.aclosing(
            RabbitMQMessageBroker(
                f"amqp://guest:guest@127.0.0.1:{proxy.port}/", exchange_name, max_attempts=1
            )
        ) as broker,
        OutboxRelay(store.engine, broker, fast_settings(max_attempts=1)) as relay,
    ):
        async with asyncio.timeout(WITHIN):
            await relay.wait_for(lambda relay: relay.dead_lettered == 1)
            proxy.refuse_new = False
            relay.notify()
            await relay.wait_for(lambda relay: relay.published == 1)

        status, out, err = await outbox_command("list", env=env)
        assert status == 0, err
        header, *lines = out.splitlines()
        assert header.split() == [
            "MESSAGE",
            "ID",
            "NAME",
            "TOPIC",
            "STATE",
            "ATTEMPTS",
            "AGE",
            "LAST",
            "ERROR",
        ]
        assert [line.split()[0] for line in lines] == [str(dead_id), str(published_id)]  # oldest first
        dead_line = lines[0].split()
        assert dead_line[1:6] == ["OutboxTestEvent", TOPIC, "dead", "1", "3h00m"]
        assert dead_line[6] == "BrokerUnavailable:"

        status, out, err = await outbox_command("list", "--state", "dead", env=env)
        assert status == 0, err
        assert [line.split()[0] for line in out.splitlines()[1:]] == [str(dead_id)]

        status, out, err = await outbox_command("replay", str(dead_id), env=env)
        assert (status, out.strip()) == (0, "replayed 1 message: pending, due now"), err
        [_, received] = await consumer.wait_for(2, within=WITHIN)  # the relay's next poll
        assert received.message_id == str(dead_id)

        status, out, err = await outbox_command("list", "--state", "dead", env=env)
        assert (status, out.strip()) == (0, "no dead rows in the outbox")


async def test_replay_all_dead_makes_every_dead_row_pending_due_now(store: Store, database_url: str) -> None:
    staged = await stage(store.engine, 3)
    async with store.engine.begin() as connection:
        await connection.execute(
            sa.update(outbox)
            .where(outbox.c.message_id.in_(staged[:2]))
            .values(state="dead", attempts=10, last_error="BrokerUnavailable: down")
        )

    status, out, err = await outbox_command("replay", "--all-dead", env=settings_env(store, database_url))

    assert (status, out.strip()) == (0, "replayed 2 messages: pending, due now"), err
    rows = (await rows_by_state(store.engine))["pending"]
    assert [row["message_id"] for row in rows] == staged
    assert all(row["attempts"] == 0 and row["last_error"] is None for row in rows)


async def test_replay_of_an_unknown_id_changes_nothing_and_fails(store: Store, database_url: str) -> None:
    [known] = await stage(store.engine, 1)
    async with store.engine.begin() as connection:
        await connection.execute(sa.update(outbox).values(state="dead", attempts=3))
    unknown = uuid.uuid4()

    status, _, err = await outbox_command(
        "replay", str(known), str(unknown), env=settings_env(store, database_url)
    )

    assert status == 1
    assert f"unknown message id {unknown}" in err
    assert "nothing replayed" in err
    assert list(await rows_by_state(store.engine)) == ["dead"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "replay takes --all-dead or message ids"),
        (["replay", "--all-dead", str(uuid.UUID(int=1))], "replay takes --all-dead or message ids"),
        (["replay", "not-a-uuid"], "not a message id (a UUID): 'not-a-uuid'"),
        (["list", "--state", "lost"], "invalid choice: 'lost'"),
        (["list", "--limit", "0"], "must be at least 1"),
        ([], "the following arguments are required"),
    ],
)
async def test_bad_arguments_exit_2_saying_what_is_wrong(
    args: list[str], message: str, tmp_path: pathlib.Path
) -> None:
    status, _, err = await outbox_command(*args, env={"RILL_STATE_DIR": str(tmp_path)})
    assert status == 2
    assert message in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RILL_DATABASE_URL": "memory"}, "there is no store, and so no outbox"),
        ({"RILL_DATABASE_URL": "mysql://db/rill"}, "unsupported database 'mysql'"),
        ({}, "the server has not run with this state_dir"),
    ],
)
async def test_settings_without_a_store_exit_2_saying_why(
    env: dict[str, str], message: str, tmp_path: pathlib.Path
) -> None:
    status, _, err = await outbox_command("list", env={"RILL_STATE_DIR": str(tmp_path / "none"), **env})
    assert status == 2
    assert message in err
