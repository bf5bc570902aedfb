"""The generated stubs are typed (mypy-protobuf's .pyi, made by `make proto`): mypy --strict on user code."""

from __future__ import annotations

import asyncio
import pathlib
import textwrap

from mypy import api as mypy_api

REPO = pathlib.Path(__file__).resolve().parents[2]

USER_CODE = """
import typing

import grpc

from protos.files.v1 import files_pb2, files_pb2_grpc
from protos.orders.v1 import orders_pb2, orders_pb2_grpc


async def process(channel: grpc.aio.Channel) -> None:
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    call = stub.ProcessOrders(orders_pb2.ProcessOrdersRequest(order_ids=["a"]))
    typing.assert_type(
        call, grpc.aio.UnaryStreamCall[orders_pb2.ProcessOrdersRequest, orders_pb2.OrderProcessedResult]
    )
    async for result in call:
        typing.assert_type(result, orders_pb2.OrderProcessedResult)
        typing.assert_type(result.order_id, str)
        typing.assert_type(result.items_count, int)
    order = await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"))
    typing.assert_type(order, orders_pb2.Order)
    typing.assert_type(order.total_amount, float)
    files = files_pb2_grpc.FileServiceStub(channel)
    async for file in files.ProcessFiles(files_pb2.ProcessFilesRequest(file_ids=["hello.txt"])):
        typing.assert_type(file, files_pb2.FileProcessedResult)


def process_sync(channel: grpc.Channel) -> list[str]:
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    request = orders_pb2.ProcessOrdersRequest(order_ids=["a"])
    return [result.order_id for result in stub.ProcessOrders(request)]
"""

WRONG_CODE = """
import grpc

from protos.orders.v1 import orders_pb2, orders_pb2_grpc


async def process(channel: grpc.aio.Channel) -> None:
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    async for result in stub.ProcessOrders(orders_pb2.GetOrderRequest(order_id="a")):
        print(result.customer_id)
    orders_pb2.ProcessOrdersRequest(order_ids=[1])
"""


async def mypy_strict(code: str, tmp_path: pathlib.Path) -> tuple[int, str]:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(code), encoding="utf-8")
    stdout, stderr, status = await asyncio.to_thread(
        mypy_api.run,
        [
            "--strict",
            "--config-file",
            "",  # this test's flags only, not the project's (which checks its own packages)
            "--cache-dir",
            str(tmp_path / "cache"),
            "--python-version",
            "3.11",
            str(source),
        ],
    )
    return status, stdout + stderr


async def test_stub_calls_and_messages_are_typed_under_mypy_strict(tmp_path: pathlib.Path) -> None:
    status, output = await mypy_strict(USER_CODE, tmp_path)
    assert status == 0, output


async def test_mypy_strict_catches_a_wrong_request_and_a_wrong_field(tmp_path: pathlib.Path) -> None:
    status, output = await mypy_strict(WRONG_CODE, tmp_path)
    assert status == 1, output
    assert (
        'Argument 1 to "__call__" of "UnaryStreamMultiCallable" has incompatible type "GetOrderRequest"'
        in output
    )
    assert '"OrderProcessedResult" has no attribute "customer_id"' in output
    assert 'List item 0 has incompatible type "int"' in output
