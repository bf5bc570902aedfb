"""What one client may take from the server: streams, calls, message size, keepalive, a stalled
reader, and the memory the embedded default keeps.

All of it is configuration (``Settings.limits``, ``RILL_LIMITS__…`` in the environment) and becomes
grpc server options in :meth:`LimitSettings.grpc_options`, except ``stall_timeout``, which the
adapter enforces per stream (:mod:`server.binding`), ``max_concurrent_rpcs`` and
``request_timeout``, enforced by :mod:`server.admission`, and ``orders_kept``/``files_kept``, the
bounds of what the services remember (:mod:`server.services`).

Every default is a bound (docs/reliability.md, "Bounded by default"): a client that opens streams
and never sends their request holds at most ``max_concurrent_streams`` of them per connection, at
most ``max_concurrent_rpcs`` calls on the whole server, each for at most ``request_timeout`` s.

What a server can and cannot bound for a slow reader (measured: ``bench/slow_client.py``,
``docs/reliability.md``): ``context.write()`` completes once the client's HTTP/2 flow-control window
takes the message, and that window is the *client's*: with grpc's default BDP probing it grows to
megabytes (tens of thousands of small items), with ``grpc.http2.bdp_probe=0`` it stays ~64 KiB. No
server option changes it. The server itself holds at most the one item being written (the adapter
asks the handler for the next item only after the transport took the previous one); what it bounds
is how long a stream may stall: a write that waits more than ``stall_timeout`` seconds for the
client's window ends the stream with RESOURCE_EXHAUSTED, closing the handler.
"""

from __future__ import annotations

import pydantic

__all__ = ["LimitSettings"]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class LimitSettings(pydantic.BaseModel):
    """Per-connection and per-stream limits of the gRPC server."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_concurrent_streams: int | None = pydantic.Field(
        100,
        ge=1,
        description="streams one connection may have open at once (HTTP/2 SETTINGS); more are refused "
        "(clients queue them); None: no limit",
    )
    max_receive_message_bytes: int = pydantic.Field(
        4 * 1024 * 1024, ge=1024, description="larger request messages end with RESOURCE_EXHAUSTED"
    )
    max_send_message_bytes: int = pydantic.Field(4 * 1024 * 1024, ge=1024)
    stall_timeout: float | None = pydantic.Field(
        30.0, gt=0, description="seconds one item may wait for the client's window; None: forever"
    )
    keepalive_time: float = pydantic.Field(
        7200.0, gt=0, description="seconds of silence after which the server pings the client"
    )
    keepalive_timeout: float = pydantic.Field(20.0, gt=0, description="seconds to wait for that ping's ack")
    min_client_ping_interval: float = pydantic.Field(
        300.0, ge=0, description="clients pinging more often (without data) get strikes, then GOAWAY"
    )
    max_ping_strikes: int = pydantic.Field(2, ge=0)
    max_concurrent_rpcs: int | None = pydantic.Field(
        2_000,
        ge=1,
        description="calls in flight on the whole server; more are refused RESOURCE_EXHAUSTED; "
        "None: no limit",
    )
    request_timeout: float | None = pydantic.Field(
        30.0,
        gt=0,
        description="seconds a call may take to send its request message; then DEADLINE_EXCEEDED; "
        "None: forever",
    )
    orders_kept: int = pydantic.Field(
        10_000, ge=1, description="processed orders GetOrder can read back (the most recent ones)"
    )
    files_kept: int = pydantic.Field(
        10_000, ge=1, description="file ids whose last FileProcessedEvent the ledger keeps (the most recent)"
    )
    max_unrequested_time: int = pydantic.Field(
        30, ge=1, description="seconds a call may wait for the server to take it up; then CANCELLED"
    )
    max_connection_idle: float | None = pydantic.Field(None, gt=0, description="close idle connections")
    max_connection_age: float | None = pydantic.Field(None, gt=0, description="recycle old connections")

    @pydantic.field_validator(
        "stall_timeout",
        "request_timeout",
        "max_concurrent_streams",
        "max_concurrent_rpcs",
        "max_connection_idle",
        "max_connection_age",
        mode="before",
    )
    @classmethod
    def _off(cls, value: object) -> object:
        # From the environment: RILL_LIMITS__STALL_TIMEOUT=off (or none, or empty) turns it off.
        if isinstance(value, str) and value.strip().lower() in {"", "off", "none", "null"}:
            return None
        return value

    def grpc_options(self, *, reuse_port: bool = False) -> list[tuple[str, int]]:
        """The grpc server options for these limits.

        ``reuse_port``: let other processes bind the same port (``SO_REUSEPORT``, which grpc turns on
        by default): only ``--workers`` wants that; otherwise a second server on a port in use must
        fail to start rather than take half of its connections.
        """
        options = [
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(self.min_client_ping_interval)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.server_max_unrequested_time_in_server", self.max_unrequested_time),
        ]
        if self.max_concurrent_streams is not None:
            options.append(("grpc.max_concurrent_streams", self.max_concurrent_streams))
            # grpc's "overload protection" (on by default) also counts streams that ended but are not
            # freed yet, and refuses new ones: a client with more streams than the limit on one
            # connection, which queues them as it should, got UNAVAILABLE (bench load: 743 of 1,000).
            # Off, the limit is HTTP/2's own: clients queue, attackers beyond it are still reset.
            options.append(("grpc.http.overload_protection", 0))
        if self.max_connection_idle is not None:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle)))
        if self.max_connection_age is not None:
            options.append(("grpc.max_connection_age_ms", _ms(self.max_connection_age)))
        return options
