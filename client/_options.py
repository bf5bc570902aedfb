"""What a client can be configured with beyond its address: TLS and the retry policy."""

from __future__ import annotations

import dataclasses
import os
import random

import grpc

__all__ = ["TLS", "RetryPolicy"]


@dataclasses.dataclass(frozen=True, repr=False)
class TLS:
    """Transport security for the channel (all PEM bytes).

    ``TLS()`` verifies the server against the system's roots; ``root_certificates`` names a private
    CA instead; ``certificate_chain`` with ``private_key`` authenticates this client (mutual TLS).
    ``server_name`` overrides the name checked against the server's certificate (for a server
    reached by IP address or through a tunnel).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("a client certificate needs its private key, and the other way round")

    @classmethod
    def from_files(
        cls,
        root_certificates: str | os.PathLike[str] | None = None,
        certificate_chain: str | os.PathLike[str] | None = None,
        private_key: str | os.PathLike[str] | None = None,
        *,
        server_name: str | None = None,
    ) -> TLS:
        """Read the PEM files that are given (``OSError`` if one cannot be read)."""

        def read(path: str | os.PathLike[str] | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as file:
                return file.read()

        return cls(read(root_certificates), read(certificate_chain), read(private_key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def __repr__(self) -> str:  # never show key material
        parts = [
            "root_certificates=<PEM>" if self.root_certificates else "root_certificates=<system>",
            "client certificate" if self.certificate_chain else "no client certificate",
        ]
        if self.server_name:
            parts.append(f"server_name={self.server_name!r}")
        return f"TLS({', '.join(parts)})"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When a call is tried again: only on UNAVAILABLE, and only while nothing was received.

    ``max_attempts`` counts the first attempt (1 turns retries off). Before retry *n* the client
    waits ``min(initial_backoff * multiplier ** (n - 1), max_backoff)`` seconds, give or take
    ``jitter`` (a fraction), and never past the call's deadline. The channel's reconnect backoff
    follows the same numbers, so that a retry meets a fresh connection attempt rather than a
    channel still waiting out grpc's default 1 s reconnect backoff.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first attempt: it must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise ValueError("need 0 <= initial_backoff <= max_backoff and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.initial_backoff * self.multiplier ** (retry - 1), self.max_backoff)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.initial_reconnect_backoff_ms", max(1, int(self.initial_backoff * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(self.max_backoff * 1000))),
        ]


NO_RETRY = RetryPolicy(max_attempts=1)
