"""Typed results, checked by mypy --strict on small programs: what ``send`` and ``stream`` give back."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

MESSAGES = """
import typing
import mediator

class OrderView(mediator.Response):
    order_id: str

class Summary(mediator.Response):
    total: int

class GetOrder(mediator.Request[OrderView]):
    order_id: str

class ProcessOrders(mediator.Request[OrderView]):
    order_ids: list[str]

class Untyped(mediator.Request):  # the spec's spelling
    order_id: str

class GetOrderHandler(mediator.RequestHandler[GetOrder, OrderView]):
    async def handle(self, request: GetOrder) -> OrderView:
        return OrderView(order_id=request.order_id)

class ProcessOrdersHandler(mediator.StreamingRequestHandler[ProcessOrders, OrderView]):
    async def handle(self, request: ProcessOrders) -> typing.AsyncIterator[OrderView]:
        for order_id in request.order_ids:
            yield OrderView(order_id=order_id)

class SummaryHandler(mediator.RequestHandler[GetOrder, Summary]):
    async def handle(self, request: GetOrder) -> Summary:
        return Summary(total=1)
"""

TYPED = """
async def use(requests: mediator.RequestMediator, streams: mediator.StreamingRequestMediator) -> None:
    typing.assert_type(await requests.send(GetOrder(order_id="a")), OrderView)
    typing.assert_type(await requests.send(Untyped(order_id="a")), typing.Any)
    async for item in streams.stream(ProcessOrders(order_ids=["a"])):
        typing.assert_type(item, OrderView)

def commands(mapper: mediator.RequestMap) -> None:
    mapper.bind(GetOrder, GetOrderHandler)
    mapper.bind(ProcessOrders, ProcessOrdersHandler)
"""

WRONG_BINDING = """
def commands(mapper: mediator.RequestMap) -> None:
    mapper.bind(GetOrder, SummaryHandler)  # answers Summary, but GetOrder declares OrderView
"""


def mypy_strict(tmp_path: pathlib.Path, program: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(MESSAGES) + textwrap.dedent(program))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_send_and_stream_are_typed_by_what_the_request_declares(tmp_path: pathlib.Path) -> None:
    checked = mypy_strict(tmp_path, TYPED)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_binding_a_handler_that_answers_another_type_is_a_type_error(tmp_path: pathlib.Path) -> None:
    checked = mypy_strict(tmp_path, WRONG_BINDING)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "program.py:" in checked.stdout
    assert '"bind" of "RequestMap"' in checked.stdout
