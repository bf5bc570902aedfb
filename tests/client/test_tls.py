"""TLS and mutual TLS, against a fake service with certificates made for the test by openssl."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

import grpc
import pytest

from client import NO_RETRY, TLS, RillClient, Unavailable
from tests.client.conftest import FakeServers
from tests.client.fakes import FakeOrderService

SERVER_NAME = "rill.test"  # the only name in the server's certificate: 127.0.0.1 needs the override


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes
    other_ca: bytes


def _openssl(directory: pathlib.Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def _make_ca(directory: pathlib.Path, name: str) -> None:
    _openssl(
        directory,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip


def _issue(directory: pathlib.Path, name: str, subject: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory,
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={subject}",
    )  # fmt: skip
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH: it makes the test certificates")
    directory = tmp_path_factory.mktemp("pki")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _issue(
        directory, "server", SERVER_NAME, f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n"
    )
    _issue(directory, "client", "rill client", "extendedKeyUsage=clientAuth\n")

    def read(name: str) -> bytes:
        return (directory / name).read_bytes()

    return Certificates(
        ca=read("ca.pem"),
        server_cert=read("server.pem"),
        server_key=read("server.key"),
        client_cert=read("client.pem"),
        client_key=read("client.key"),
        other_ca=read("other-ca.pem"),
    )


async def _serve(fake_servers: FakeServers, certificates: Certificates, fake: FakeOrderService) -> str:
    credentials = grpc.ssl_server_credentials(
        [(certificates.server_key, certificates.server_cert)],
        root_certificates=certificates.ca,
        require_client_auth=True,
    )
    return await fake_servers.start(fake, credentials)


async def _order_ids(client: RillClient) -> list[str]:
    async with client.process_orders(["a", "b", "c"]) as results:
        return [result.order_id async for result in results]


async def test_mutual_tls(fake_servers: FakeServers, certificates: Certificates) -> None:
    fake = FakeOrderService()
    address = await _serve(fake_servers, certificates, fake)
    tls = TLS(certificates.ca, certificates.client_cert, certificates.client_key, server_name=SERVER_NAME)

    async with RillClient(address, tls=tls, token="t0ken", timeout=10) as client:
        assert await _order_ids(client) == ["a", "b", "c"]

    assert fake.calls[0].metadata["authorization"] == "Bearer t0ken"


async def test_tls_from_pem_files(
    fake_servers: FakeServers, certificates: Certificates, tmp_path: pathlib.Path
) -> None:
    for name, pem in [
        ("ca.pem", certificates.ca),
        ("c.pem", certificates.client_cert),
        ("k.pem", certificates.client_key),
    ]:
        (tmp_path / name).write_bytes(pem)
    address = await _serve(fake_servers, certificates, FakeOrderService())
    tls = TLS.from_files(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem", server_name=SERVER_NAME)

    async with RillClient(address, tls=tls, timeout=10) as client:
        assert await _order_ids(client) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "case", ["no client certificate", "server not trusted", "wrong server name", "plaintext"]
)
async def test_what_the_handshake_refuses(
    fake_servers: FakeServers, certificates: Certificates, case: str
) -> None:
    fake = FakeOrderService()
    address = await _serve(fake_servers, certificates, fake)
    tls: TLS | None = {
        "no client certificate": TLS(certificates.ca, server_name=SERVER_NAME),
        "server not trusted": TLS(
            certificates.other_ca, certificates.client_cert, certificates.client_key, server_name=SERVER_NAME
        ),
        "wrong server name": TLS(certificates.ca, certificates.client_cert, certificates.client_key),
        "plaintext": None,
    }[case]

    async with RillClient(address, tls=tls, retry=NO_RETRY, timeout=10) as client:
        with pytest.raises(Unavailable):
            await _order_ids(client)

    assert fake.calls == [], "no call may reach the service"
