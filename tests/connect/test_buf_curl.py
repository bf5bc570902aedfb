"""`buf curl` (npm @bufbuild/buf), a real Connect and gRPC-Web client, against the real edge."""

from __future__ import annotations

import asyncio
import json
import pathlib
import typing

import pytest

from server import RillServer
from tests.connect.conftest import GET_ORDER, PROCESS
from tests.connect.wire import connect_violations

REPO = pathlib.Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"


async def buf_curl(
    server: RillServer, protocol: str, path: str, data: dict[str, typing.Any]
) -> tuple[int, str, str]:
    assert server.http is not None
    process = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--schema",
        str(REPO),  # the contracts in protos/, with the googleapis files they import
        "--protocol",
        protocol,
        "--data",
        json.dumps(data),
        f"http://{server.http.address}{path}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _objects(text: str) -> list[dict[str, typing.Any]]:
    """buf curl prints one indented JSON object per message."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(text, at)) < len(text):
        value, at = decoder.raw_decode(text, at)
        objects.append(value)
    return objects


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_streams_process_orders(http_service: RillServer, protocol: str) -> None:
    code, stdout, stderr = await buf_curl(http_service, protocol, PROCESS, {"order_ids": ["a", "b", "c"]})
    assert code == 0, stderr
    results = _objects(stdout)
    assert [r["orderId"] for r in results] == ["a", "b", "c"]
    assert {r["status"] for r in results} == {"processed"}


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_gets_invalid_argument_with_the_field_violations(
    http_service: RillServer, protocol: str
) -> None:
    code, _, stderr = await buf_curl(http_service, protocol, PROCESS, {"order_ids": ["ok", ""]})
    assert code != 0
    error = json.loads(stderr)
    assert error["code"] == "invalid_argument"
    assert [field for field, _ in connect_violations(error)] == ["order_ids[1]"]


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_buf_curl_gets_not_found(http_service: RillServer, protocol: str) -> None:
    code, _, stderr = await buf_curl(http_service, protocol, GET_ORDER, {"order_id": "never"})
    assert code != 0
    assert json.loads(stderr) == {
        "code": "not_found",
        "message": "order 'never' is not known (the service keeps the last 10,000 orders)",
    }
