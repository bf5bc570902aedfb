"""Fixtures shared by every test package: a real server, in-process, on a free port."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import typing

import grpc
import pytest

from mediator.message_brokers.memory import InMemoryMessageBroker
from server import RillServer, Settings, create_server
from server.settings import DEMO_STORAGE

DEFAULT_PORTS = (50051, 8080)  # what `make run` listens on

# The demo keeps its state in memory in tests (and in the servers they start as processes), whatever
# the developer's shell says: the embedded store's default, ./state, would be shared by every test and
# outlive them. Tests of the store give a database_url or state_dir of their own (tests/store/).
os.environ["RILL_DATABASE_URL"] = "memory"


@pytest.fixture(scope="session", autouse=True)
def default_ports_taken() -> typing.Iterator[None]:
    """Hold the service's default ports for the whole run, as a developer's `make run` would: a test
    that binds one instead of a free port fails here and everywhere, not only next to `make run`."""
    with contextlib.ExitStack() as held:
        for port in DEFAULT_PORTS:
            listener = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                listener.bind(("127.0.0.1", port))
                listener.listen()
            except OSError:
                pass  # taken already (`make run` is up): just as good
        yield


@pytest.fixture
def storage_root(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the demo storage that a test may change freely."""
    root = tmp_path / "storage"
    shutil.copytree(DEMO_STORAGE, root)
    return root


@pytest.fixture
def server_settings(storage_root: pathlib.Path) -> Settings:
    return Settings(address="127.0.0.1:0", http_address="", storage_root=storage_root, grace_period=0)


@pytest.fixture
def broker() -> InMemoryMessageBroker:
    return InMemoryMessageBroker()


@pytest.fixture
async def rill_server(
    server_settings: Settings, broker: InMemoryMessageBroker
) -> typing.AsyncIterator[RillServer]:
    """The real service, started in this event loop on 127.0.0.1:<free port>, stopped after the test."""
    server = create_server(server_settings, broker=broker)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def http_service(server_settings: Settings) -> typing.AsyncIterator[RillServer]:
    """The real service with its HTTP edge too, both on free ports."""
    server = create_server(server_settings.model_copy(update={"http_address": "127.0.0.1:0"}))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def channel(rill_server: RillServer) -> typing.AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(rill_server.address) as channel:
        yield channel
