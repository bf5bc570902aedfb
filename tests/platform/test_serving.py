"""Any team's bindings served by the platform's public assembly, in-process and as ``--app``."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2

from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import ServiceBinding, ServiceSettings, Settings
from server.apps import AppError, load_services
from server.convert import BindingError
from server.testing import serving
from tests.platform import app
from tests.server.test_process import spawn_server
from tests.typed_grpc import health_stub, read

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def record() -> app.Recorder:
    return app.fresh_record()


def request(*order_ids: str) -> orders_pb2.ProcessOrdersRequest:
    return orders_pb2.ProcessOrdersRequest(order_ids=list(order_ids))


async def test_a_teams_bindings_get_health_reflection_and_metrics(record: app.Recorder) -> None:
    record.release_events.set()
    async with serving(app.services, http=True) as served:
        stub = orders_pb2_grpc.OrderServiceStub(served.channel)
        shipped = [r.status async for r in stub.ProcessOrders(request("a", "b"), timeout=10)]
        health = health_stub(served.channel)
        for name in ("", "orders.v1.OrderService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        view = await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="a"), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="zzz"), timeout=10)
        assert served.http_url is not None
        reader, writer = await asyncio.open_connection(*served.http_url.removeprefix("http://").split(":"))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = (await reader.read()).decode()
        writer.close()
    assert shipped == ["shipped", "shipped"]
    assert view.status == "shipped"
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert record.handled == ["a", "b"]
    assert (
        'rill_event_handler_runs_total{handler="RecordShipped",mediator="shipping",outcome="ok"} 2.0'
        in metrics
    )
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="ProcessOrders"' in metrics


async def test_the_apps_settings_come_from_its_own_section() -> None:
    settings = Settings(
        services={"shipping": ServiceSettings(max_concurrent_event_handlers=3, event_delivery="overlapped")}
    )
    async with serving(app.services, settings) as served:
        shipping = served.server.mediators["shipping"]
        assert shipping.max_concurrent_event_handlers == 3
        assert shipping.max_concurrent_event_handlers_per_stream == 2
        assert shipping.event_delivery == "overlapped"


async def test_server_cancel_in_overlapped_delivery_runs_finally_in_the_rpc_task_and_drains(
    record: app.Recorder,
) -> None:
    # The client cancels while the handler's generator is parked at `yield` (the client reads
    # nothing more) and the delivered items' events are still suspended in their handler: the
    # handler's `finally` runs in the RPC's own task, and every delivered item's event is handled
    # before the server counts the call ended.
    settings = Settings(services={"shipping": ServiceSettings(event_delivery="overlapped")})
    async with serving(app.services, settings) as served:
        stub = orders_pb2_grpc.OrderServiceStub(served.channel)
        call = stub.ProcessOrders(request(*(f"o{n}" for n in range(5))), timeout=30)
        delivered = [(await read(call)).order_id for _ in range(2)]
        call.cancel()
        await record.finally_ran.wait()
        assert record.handled == []  # events still suspended: the drain must wait for them
        record.release_events.set()
        assert await served.server.calls.wait_idle(30)
        handled_when_idle = list(record.handled)
    assert record.finally_task is record.stream_task, "the handler was closed in the RPC's task"
    assert set(delivered) <= set(handled_when_idle), "a delivered item's event was not handled"
    assert served.server.mediators["shipping"].events_abandoned == 0


def test_load_services_explains_what_is_wrong() -> None:
    with pytest.raises(AppError, match="expected MODULE:ATTR"):
        load_services("tests.platform.app")
    with pytest.raises(AppError, match="cannot import 'no_such_module'"):
        load_services("no_such_module:x")
    with pytest.raises(AppError, match="has no attribute 'nothing'"):
        load_services("tests.platform.app:nothing")
    with pytest.raises(AppError, match="expected ServiceBinding objects, got Recorder"):
        load_services("tests.platform.app:RECORD")
    assert load_services("tests.platform.app:services") is app.services


async def test_python_m_server_app_serves_the_named_bindings_with_their_settings() -> None:
    process = await spawn_server(
        "--app", "tests.platform.app:services", env={"RILL_SERVICES__SHIPPING__EVENT_HANDLER_TIMEOUT": "7"}
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("listening on "), line
        address = line.removeprefix("listening on ").strip()
        async with grpc.aio.insecure_channel(address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            call = stub.ProcessOrders(request("x"), timeout=10)
            first = await read(call)
            assert await call.code() == grpc.StatusCode.OK
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert first.status == "shipped"  # the app's handler, not the demo's ("processed")
    log = stderr.decode()
    assert (
        "shipping: max_concurrent_event_handlers=10 per_stream=5 delivery=strict handler_timeout=7.0" in log
    )


@pytest.mark.parametrize(
    ("app_spec", "message"),
    [("tests.platform.app:nothing", "has no attribute 'nothing'"), ("nope", "expected MODULE:ATTR")],
)
async def test_python_m_server_with_a_wrong_app_exits_2_saying_why(app_spec: str, message: str) -> None:
    process = await spawn_server("--app", app_spec)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert message in stderr.decode()


async def test_a_services_own_exceptions_map_to_the_codes_its_binding_names(record: app.Recorder) -> None:
    record.release_events.set()
    async with serving(app.services) as served:
        stub = orders_pb2_grpc.OrderServiceStub(served.channel)
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for result in stub.ProcessOrders(request("a", "out-of-stock", "b"), timeout=10):
                received.append(result.order_id)
    assert received == ["a"]
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "nothing left to ship for out-of-stock"


def test_error_codes_that_are_not_exceptions_and_codes_are_refused_at_bind_time() -> None:
    (binding,) = app.services(Settings())
    with pytest.raises(BindingError, match="must be exception classes"):
        ServiceBinding(binding.service, rpcs=[], error_codes={"nope": grpc.StatusCode.INTERNAL})  # type: ignore[dict-item]  # wrong on purpose
    with pytest.raises(BindingError, match=r"OutOfStock must map to an error code, not StatusCode\.OK"):
        ServiceBinding(binding.service, rpcs=[], error_codes={app.OutOfStock: grpc.StatusCode.OK})


def test_the_demo_services_import_no_transport() -> None:
    code = (
        "import sys, server.services.orders, server.services.files, server.exceptions; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'google', 'fastapi', 'uvicorn', 'starlette', 'connectrpc')); "
        "assert not loaded, loaded"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert completed.returncode == 0, completed.stderr
