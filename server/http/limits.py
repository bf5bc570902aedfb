"""What one client may take from the HTTP edge: connections, time to send a request, idle time.

``Settings.http_limits`` (``RILL_HTTP_LIMITS__…`` in the environment). They apply to every HTTP
listener of the server: the edge (``http_address``) and the metrics port (``metrics_address``).
Two more limits are shared with gRPC and come from ``Settings.limits``: a request body is at most
``limits.max_receive_message_bytes`` (else 413), and an SSE stream whose client takes nothing for
``limits.stall_timeout`` seconds ends as a gRPC stream does (RESOURCE_EXHAUSTED).
See docs/reliability.md, "HTTP edge".
"""

from __future__ import annotations

import pydantic

__all__ = ["HttpLimitSettings"]


class HttpLimitSettings(pydantic.BaseModel):
    """Per-connection limits of the HTTP listeners (enforced in :mod:`server.http.protocol`)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_connections: int = pydantic.Field(
        512,
        ge=1,
        description=(
            "open connections per HTTP listener; more are answered 503 and closed at once "
            "(keep it well below the process's file-descriptor limit: gRPC needs descriptors too)"
        ),
    )
    header_timeout: float = pydantic.Field(
        10.0,
        gt=0,
        description="seconds a connection may take to send a request's headers (from connecting or "
        "from the previous response); then 408 and closed",
    )
    body_timeout: float = pydantic.Field(
        30.0, gt=0, description="seconds a request may take to send its body after its headers; then 408"
    )
    keep_alive_timeout: int = pydantic.Field(
        5, ge=1, description="seconds an idle keep-alive connection is kept between requests (uvicorn)"
    )
