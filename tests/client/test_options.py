"""RetryPolicy and TLS: their rules, checked without a network."""

from __future__ import annotations

import pathlib
import typing

import pytest

from client import TLS, RetryPolicy


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=0.5, jitter=0)

    assert [policy.backoff(retry) for retry in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_backoff_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=1, jitter=0.2)

    assert all(0.8 <= policy.backoff(1) <= 1.2 for _ in range(200))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"max_attempts": 0}, "at least 1"),
        ({"initial_backoff": -1}, "initial_backoff"),
        ({"initial_backoff": 3, "max_backoff": 1}, "max_backoff"),
        ({"jitter": 1}, "jitter"),
    ],
)
def test_nonsense_policies_are_refused(arguments: dict[str, typing.Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RetryPolicy(**arguments)


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="private key"):
        TLS(certificate_chain=b"cert")


def test_tls_reads_files_and_never_shows_the_key(tmp_path: pathlib.Path) -> None:
    (tmp_path / "ca.pem").write_bytes(b"CA")
    (tmp_path / "cert.pem").write_bytes(b"CERT")
    (tmp_path / "key.pem").write_bytes(b"SECRET-KEY")

    tls = TLS.from_files(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem", server_name="rill")

    assert (tls.root_certificates, tls.certificate_chain, tls.private_key) == (b"CA", b"CERT", b"SECRET-KEY")
    assert "SECRET" not in repr(tls)
    with pytest.raises(FileNotFoundError):
        TLS.from_files(tmp_path / "missing.pem")
