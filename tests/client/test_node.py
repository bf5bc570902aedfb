"""The Node.js client (examples/node) against the real service: another language, the same contract.

Without ``node`` on PATH these tests fail when ``CI`` is set and are skipped (with the reason) otherwise;
without the npm packages they fail, saying how to install them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import grpc
import pytest

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server.services.orders import OrderProcessedResult
from tests.client.conftest import ROOT, ServerProcess, cli_env

SCRIPT = ROOT / "examples" / "node" / "process_orders.js"


@pytest.fixture(scope="module")
def node() -> str:
    executable = shutil.which("node")
    if executable is None:
        message = "node is not on PATH: install Node.js 18+ to run the Node client (examples/node)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run these tests")
        pytest.skip(message)
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (ROOT / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"node_modules has no {package}: run `make install` (it runs `npm ci`)")
    return executable


def run_node(node: str, server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(SCRIPT), "--address", server.address, *args],
        cwd=SCRIPT.parent,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_node_client_prints_each_result_as_a_json_line(node: str, server_process: ServerProcess) -> None:
    done = run_node(node, server_process, "a", "b", "c")

    assert done.returncode == 0, done.stderr
    results = [OrderProcessedResult.model_validate_json(line) for line in done.stdout.splitlines()]
    assert [result.order_id for result in results] == ["a", "b", "c"]
    assert {(result.status, result.items_count) for result in results} == {("processed", 3)}


def test_node_client_cancels_mid_stream(node: str, server_process: ServerProcess) -> None:
    cancelled_before = server_process.handled("orders.v1.OrderService/ProcessOrders", "CANCELLED")
    request_id = f"req-node-{uuid.uuid4().hex[:8]}"
    ids = [f"order-{n}" for n in range(10_000)]

    done = run_node(node, server_process, "--cancel-after", "2", "--request-id", request_id, *ids)

    assert done.returncode == 0, done.stderr
    assert [OrderProcessedResult.model_validate_json(line).order_id for line in done.stdout.splitlines()] == [
        "order-0",
        "order-1",
    ]
    assert "cancelled after 2 results" in done.stderr
    server_process.wait_handled(
        "orders.v1.OrderService/ProcessOrders", "CANCELLED", more_than=cancelled_before
    )
    # The service stopped: the last order was never processed (GetOrder knows every processed one).
    with grpc.insecure_channel(server_process.address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        assert stub.GetOrder(orders_pb2.GetOrderRequest(order_id="order-1"), timeout=30).order_id == "order-1"
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetOrder(orders_pb2.GetOrderRequest(order_id="order-9999"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_node_client_shows_field_violations(node: str, server_process: ServerProcess) -> None:
    done = run_node(node, server_process, "fine", "")

    assert done.returncode == 64 + 3
    assert "INVALID_ARGUMENT" in done.stderr
    assert "  order_ids[1]: String should have at least 1 character" in done.stderr.splitlines()
    assert done.stdout == ""
