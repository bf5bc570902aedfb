"""Transport security from configuration: TLS, or mutual TLS when a client CA is given.

``Settings.tls`` (``RILL_TLS__CERT_FILE``, ``RILL_TLS__KEY_FILE``, ``RILL_TLS__CLIENT_CA_FILE``):
with a certificate and its key the gRPC port (and the HTTP edge) serve TLS only; with a client CA as
well, every client must present a certificate signed by it (mutual TLS). The files are read at
start-up: a missing or unreadable one stops the server before it serves.
"""

from __future__ import annotations

import pathlib
import ssl
import typing

import grpc
import pydantic

__all__ = ["TlsSettings"]


class TlsSettings(pydantic.BaseModel):
    """PEM files of the server's certificate chain and key, and of the CA that signs client certificates."""

    model_config = pydantic.ConfigDict(extra="forbid")

    cert_file: pathlib.Path | None = None
    key_file: pathlib.Path | None = None
    client_ca_file: pathlib.Path | None = pydantic.Field(
        None, description="set: mutual TLS, clients must present a certificate signed by this CA"
    )

    @pydantic.model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("tls: client_ca_file (mutual TLS) needs cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """grpc credentials for the configured files (``OSError`` if one cannot be read)."""
        if self.cert_file is None or self.key_file is None:
            raise ValueError("TLS is not configured")
        client_ca = self.client_ca_file.read_bytes() if self.client_ca_file is not None else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )

    def uvicorn_options(self) -> dict[str, typing.Any]:
        """The same configuration as uvicorn's ``ssl_*`` options (empty when TLS is off)."""
        if not self.enabled:
            return {}
        options: dict[str, typing.Any] = {
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
        }
        if self.client_ca_file is not None:
            options |= {"ssl_ca_certs": str(self.client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options
