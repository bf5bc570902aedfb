"""The example application (examples/inventory): nested messages, an enum and a map, served by the
platform, called with the generic client in-process and with grpcurl against ``python -m server --app``."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from client import RillClient
from client.exceptions import NotFound
from examples.inventory import app
from examples.inventory.v1 import inventory_pb2
from server import Settings
from server.testing import serving
from tests.server.test_grpcurl import grpcurl, json_objects
from tests.server.test_process import spawn_server

REPO = pathlib.Path(__file__).resolve().parents[2]
RESTOCK = "/inventory.v1.InventoryService/Restock"
GET_STOCK = "/inventory.v1.InventoryService/GetStock"


def restock(*lines: tuple[str, int]) -> inventory_pb2.RestockRequest:
    return inventory_pb2.RestockRequest(
        lines=[
            inventory_pb2.Line(
                sku=sku, quantity=quantity, location=inventory_pb2.Location(warehouse="w1", bin="b7")
            )
            for sku, quantity in lines
        ],
        priority=inventory_pb2.PRIORITY_URGENT,
        labels={"source": "test"},
    )


async def test_the_generic_client_streams_and_reads_back_what_the_event_handler_recorded() -> None:
    async with serving(app.services) as served, RillClient(served.address) as client:
        levels = [
            level
            async for level in client.stream(
                RESTOCK, restock(("a", 2), ("b", 5), ("a", 3)), inventory_pb2.StockLevel
            )
        ]
        after = await client.call(GET_STOCK, inventory_pb2.GetStockRequest(sku="a"), inventory_pb2.StockLevel)
        with pytest.raises(NotFound):
            await client.call(GET_STOCK, inventory_pb2.GetStockRequest(sku="zz"), inventory_pb2.StockLevel)
    assert [(level.sku, level.on_hand) for level in levels] == [("a", 2), ("b", 5), ("a", 5)]
    assert all(level.priority == inventory_pb2.PRIORITY_URGENT for level in levels)
    assert all(dict(level.labels) == {"source": "test"} for level in levels)
    assert levels[0].location.bin == "b7"
    assert after.on_hand == 5


async def test_grpcurl_streams_from_python_m_server_app_with_enum_names_and_maps() -> None:
    process = await spawn_server(
        "--app",
        "examples.inventory.app:services",
        env={"RILL_SERVICES__INVENTORY__EVENT_DELIVERY": "strict"},
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on "), line
        address = line.removeprefix("listening on ").strip()
        body = (
            '{"lines": [{"sku": "x", "quantity": 4, "location": {"warehouse": "w2", "bin": "c1"}}],'
            ' "priority": "PRIORITY_NORMAL", "labels": {"batch": "7"}}'
        )
        code, out, err = await grpcurl("-d", body, address, "inventory.v1.InventoryService/Restock")
        assert code == 0, err
        code_bad, _, err_bad = await grpcurl(
            "-d", '{"lines": []}', address, "inventory.v1.InventoryService/Restock"
        )
    finally:
        process.terminate()
        await asyncio.wait_for(process.communicate(), timeout=60)
    assert json_objects(out) == [
        {
            "sku": "x",
            "on_hand": 4,
            "location": {"warehouse": "w2", "bin": "c1"},
            "priority": "PRIORITY_NORMAL",
            "labels": {"batch": "7"},
        }
    ]
    assert code_bad == 64 + 3  # grpcurl: 64 + INVALID_ARGUMENT
    assert "lines" in err_bad


def test_the_apps_settings_section_is_its_own() -> None:
    (binding,) = app.services(Settings(services={"inventory": {"max_concurrent_event_handlers": 4}}))
    assert binding.settings_name == "inventory"
    assert binding.streaming is not None
    assert binding.streaming.max_concurrent_event_handlers == 4
