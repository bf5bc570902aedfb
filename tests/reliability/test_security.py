"""Security from configuration: TLS, mutual TLS, bearer-token auth, reflection off, server limits.

Certificates are throwaway ones made by ``trustme`` for each test.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import ssl
import typing

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import client
from protos.orders.v1 import orders_pb2, orders_pb2_grpc
from server import RillServer, Settings, create_server, load_settings
from server.limits import LimitSettings
from server.tls import TlsSettings
from tests.server.test_process import spawn_server
from tests.typed_grpc import health_stub, read, reflection_stub

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("client@example.test")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in server_cert.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    client_cert.private_key_pem.write_to_path(str(files["client_key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    return files


async def serving(settings: Settings) -> RillServer:
    server = create_server(settings)
    await server.start()
    return server


async def process_orders(channel: grpc.aio.Channel, *metadata: tuple[str, str]) -> list[str]:
    call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
        orders_pb2.ProcessOrdersRequest(order_ids=["a", "b"]), metadata=metadata or None
    )
    return [result.order_id async for result in call]


def secure_channel(
    address: str, files: dict[str, pathlib.Path], *, client_cert: bool = False
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files["ca"].read_bytes(),
        private_key=files["client_key"].read_bytes() if client_cert else None,
        certificate_chain=files["client_cert"].read_bytes() if client_cert else None,
    )
    port = address.rpartition(":")[2]
    return grpc.aio.secure_channel(f"localhost:{port}", credentials)


async def test_tls_from_configuration(server_settings: Settings, tls_files: dict[str, pathlib.Path]) -> None:
    tls = TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"])
    server = await serving(server_settings.model_copy(update={"tls": tls}))
    try:
        async with secure_channel(server.address, tls_files) as channel:
            assert await process_orders(channel) == ["a", "b"]
        async with grpc.aio.insecure_channel(server.address) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await process_orders(plain)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(grace=0)


async def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(
    server_settings: Settings, tls_files: dict[str, pathlib.Path]
) -> None:
    tls = TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"], client_ca_file=tls_files["ca"])
    server = await serving(server_settings.model_copy(update={"tls": tls}))
    try:
        async with secure_channel(server.address, tls_files, client_cert=True) as channel:
            assert await process_orders(channel) == ["a", "b"]
        async with secure_channel(server.address, tls_files) as no_certificate:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await process_orders(no_certificate)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        stranger = trustme.CA().issue_cert("stranger@example.test")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls_files["ca"].read_bytes(),
            private_key=stranger.private_key_pem.bytes(),
            certificate_chain=stranger.cert_chain_pems[0].bytes(),
        )
        port = server.address.rpartition(":")[2]
        async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as foreign:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await process_orders(foreign)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(grace=0)


def test_tls_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, pathlib.Path]
) -> None:
    monkeypatch.setenv("RILL_TLS__CERT_FILE", str(tls_files["cert"]))
    monkeypatch.setenv("RILL_TLS__KEY_FILE", str(tls_files["key"]))
    monkeypatch.setenv("RILL_TLS__CLIENT_CA_FILE", str(tls_files["ca"]))
    monkeypatch.setenv("RILL_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("RILL_REFLECTION", "false")
    monkeypatch.setenv("RILL_LIMITS__MAX_CONCURRENT_STREAMS", "64")
    monkeypatch.setenv("RILL_LIMITS__STALL_TIMEOUT", "off")
    settings = load_settings()
    assert settings.tls.client_ca_file == tls_files["ca"]
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert settings.reflection is False
    assert ("grpc.max_concurrent_streams", 64) in settings.limits.grpc_options()
    assert settings.limits.stall_timeout is None


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        TlsSettings(cert_file=pathlib.Path("server.pem"))


def test_limits_become_grpc_server_options() -> None:
    options = dict(
        LimitSettings(
            max_concurrent_streams=100,
            max_receive_message_bytes=1 << 20,
            keepalive_time=60,
            keepalive_timeout=5,
            min_client_ping_interval=10,
            max_connection_idle=300,
            max_unrequested_time=10,
        ).grpc_options()
    )
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.max_receive_message_length"] == 1 << 20
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.max_connection_idle_ms"] == 300_000
    assert options["grpc.server_max_unrequested_time_in_server"] == 10


@pytest.fixture
async def token_server(server_settings: Settings) -> typing.AsyncIterator[RillServer]:
    settings = server_settings.model_copy(update={"auth_token": TOKEN, "http_address": "127.0.0.1:0"})
    settings = Settings.model_validate(settings.model_dump())  # the token as a SecretStr
    server = await serving(settings)
    try:
        yield server
    finally:
        await server.stop(grace=0)


async def test_bearer_token_is_required(token_server: RillServer) -> None:
    async with grpc.aio.insecure_channel(token_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await process_orders(channel)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await process_orders(channel, ("authorization", "Bearer not-the-token"))
        assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await process_orders(channel, ("authorization", f"Bearer {TOKEN}")) == ["a", "b"]
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await orders_pb2_grpc.OrderServiceStub(channel).GetOrder(orders_pb2.GetOrderRequest(order_id="a"))
        assert unary.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Probes and tools need no token.
        health = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert "orders.v1.OrderService" in await listed_services(channel)


async def test_the_http_edge_requires_the_same_token(token_server: RillServer) -> None:
    assert token_server.http is not None
    async with httpx.AsyncClient(base_url=f"http://{token_server.http.address}", timeout=30) as client:
        missing = await client.get("/v1/orders/a")
        assert missing.status_code == 401
        assert missing.json()["code"] == "UNAUTHENTICATED"
        wrong = await client.get("/v1/orders/a", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 403
        stream = await client.post(
            "/v1/orders:process", json={"order_ids": ["a"]}, headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert stream.status_code == 200
        assert "event: complete" in stream.text
        found = await client.get("/v1/orders/a", headers={"authorization": f"Bearer {TOKEN}"})
        assert found.status_code == 200
        assert (await client.get("/")).status_code == 200, "the page itself holds no data"


async def listed_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_stub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    response = await read(call)
    call.cancel()
    return [service.name for service in response.list_services_response.service]


async def test_reflection_can_be_turned_off(server_settings: Settings) -> None:
    server = await serving(server_settings.model_copy(update={"reflection": False}))
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await listed_services(channel)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
            health = await health_stub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(grace=0)


async def test_the_http_edge_serves_tls_with_the_same_files(
    server_settings: Settings, tls_files: dict[str, pathlib.Path]
) -> None:
    tls = TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"])
    server = await serving(server_settings.model_copy(update={"tls": tls, "http_address": "127.0.0.1:0"}))
    try:
        assert server.http is not None
        context = ssl.create_default_context(cafile=str(tls_files["ca"]))
        async with httpx.AsyncClient(verify=context, timeout=30) as client:
            response = await client.post(
                f"https://localhost:{server.http.port}/v1/orders:process", json={"order_ids": ["a"]}
            )
        assert response.status_code == 200
        assert "event: complete" in response.text
    finally:
        await server.stop(grace=0)


async def test_calls_beyond_max_concurrent_rpcs_are_refused_resource_exhausted(
    server_settings: Settings,
) -> None:
    limits = LimitSettings(max_concurrent_rpcs=2)
    server = await serving(server_settings.model_copy(update={"limits": limits}))
    # Clients with a 64 KiB window that stop reading keep their streams open: 2 calls in flight.
    held = [
        grpc.aio.insecure_channel(server.address, options=[("grpc.http2.bdp_probe", 0)]) for _ in range(2)
    ]
    try:
        ids = [f"{index:0100d}" for index in range(2_000)]
        for channel in held:
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(
                orders_pb2.ProcessOrdersRequest(order_ids=ids)
            )
            assert (await call.read()) is not grpc.aio.EOF
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await process_orders(channel)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await asyncio.gather(*(channel.close() for channel in held))
        await server.stop(grace=0)


# -- Where users meet TLS and the token: the HTTPS edge, the Python client, `python -m server` ------


def _http_started(server: RillServer) -> float:
    """How many calls the HTTP edge let through to the service (from the server's own metrics)."""
    assert server.metrics is not None
    labels = {
        "grpc_type": "server_stream",
        "grpc_service": "orders.v1.OrderService",
        "grpc_method": "ProcessOrders",
        "transport": "http",
    }
    return server.metrics.registry.get_sample_value("grpc_server_started_total", labels) or 0.0


async def _https_process(url: str, context: ssl.SSLContext) -> httpx.Response:
    async with httpx.AsyncClient(verify=context, timeout=30) as client:
        return await client.post(url, json={"order_ids": ["a"]})


async def test_the_https_edge_with_a_client_ca_refuses_a_client_without_a_certificate(
    server_settings: Settings, tls_files: dict[str, pathlib.Path]
) -> None:
    tls = TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"], client_ca_file=tls_files["ca"])
    server = await serving(server_settings.model_copy(update={"tls": tls, "http_address": "127.0.0.1:0"}))
    try:
        assert server.http is not None
        url = f"https://localhost:{server.http.port}/v1/orders:process"
        with_certificate = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with_certificate.load_cert_chain(str(tls_files["client_cert"]), str(tls_files["client_key"]))
        response = await _https_process(url, with_certificate)
        assert response.status_code == 200
        assert "event: complete" in response.text
        assert _http_started(server) == 1

        without = ssl.create_default_context(cafile=str(tls_files["ca"]))
        with pytest.raises(httpx.TransportError):  # TLS 1.3: the refusal arrives as the first read fails
            await _https_process(url, without)
        stranger = trustme.CA().issue_cert("stranger@example.test")
        foreign = ssl.create_default_context(cafile=str(tls_files["ca"]))
        stranger.configure_cert(foreign)
        with pytest.raises(httpx.TransportError):
            await _https_process(url, foreign)
        async with httpx.AsyncClient(timeout=30) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.post(f"http://localhost:{server.http.port}/v1/orders:process", json={})
        assert _http_started(server) == 1, "no refused client reached the service"
    finally:
        await server.stop(grace=0)


async def test_the_python_client_with_tls_and_a_token_against_the_real_service(
    server_settings: Settings, tls_files: dict[str, pathlib.Path]
) -> None:
    tls = TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"], client_ca_file=tls_files["ca"])
    settings = server_settings.model_copy(update={"tls": tls, "auth_token": TOKEN})
    server = await serving(Settings.model_validate(settings.model_dump()))
    port = server.address.rpartition(":")[2]
    address = f"localhost:{port}"
    client_tls = client.TLS.from_files(tls_files["ca"], tls_files["client_cert"], tls_files["client_key"])
    try:
        async with client.RillClient(address, tls=client_tls, token=TOKEN, timeout=30) as rill:
            async with rill.process_orders(["a", "b"]) as results:
                assert [result.order_id async for result in results] == ["a", "b"]
            assert (await rill.get_order("a")).order_id == "a"
        async with client.RillClient(address, tls=client_tls, timeout=30) as rill:
            with pytest.raises(client.Unauthenticated):
                await rill.get_order("a")
        async with client.RillClient(address, tls=client_tls, token="not-the-token", timeout=30) as rill:
            with pytest.raises(client.PermissionDenied):
                async with rill.process_orders(["c"]) as results:
                    async for _ in results:
                        pytest.fail("nothing is streamed to a wrong token")
        no_certificate = client.TLS.from_files(tls_files["ca"])
        async with client.RillClient(
            address, tls=no_certificate, token=TOKEN, retry=client.NO_RETRY, timeout=30
        ) as rill:
            with pytest.raises(client.Unavailable):
                await rill.get_order("a")
        assert len(server.handlers.order_book()) == 2, "only the authorised call processed orders"
    finally:
        await server.stop(grace=0)


async def test_the_token_is_never_logged(token_server: RillServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert token_server.http is not None
    async with grpc.aio.insecure_channel(token_server.address) as channel:
        assert await process_orders(channel, ("authorization", f"Bearer {TOKEN}")) == ["a", "b"]
        with pytest.raises(grpc.aio.AioRpcError):
            await process_orders(channel, ("authorization", f"Bearer {TOKEN}-wrong"))
    async with httpx.AsyncClient(base_url=f"http://{token_server.http.address}", timeout=30) as http:
        await http.get("/v1/orders/a", headers={"authorization": f"Bearer {TOKEN}-wrong"})
    await token_server.stop(grace=0)
    assert caplog.records, "the calls were logged"
    assert TOKEN not in caplog.text
    assert not [record for record in caplog.records if TOKEN in str(record.__dict__)]


@pytest.mark.parametrize("missing", ["cert", "key", "ca"])
async def test_python_m_server_with_a_missing_tls_file_does_not_serve(
    tls_files: dict[str, pathlib.Path], missing: str
) -> None:
    env = {
        "RILL_TLS__CERT_FILE": str(tls_files["cert"]),
        "RILL_TLS__KEY_FILE": str(tls_files["key"]),
        "RILL_TLS__CLIENT_CA_FILE": str(tls_files["ca"]),
    }
    gone = tls_files[missing]
    gone.unlink()
    process = await spawn_server(env=env)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2, stderr.decode()
    assert "listening on" not in stdout.decode()
    text = stderr.decode()
    assert "cannot start" in text
    assert str(gone) in text
    assert "Traceback" not in text
