"""What rill's server and its clients agree on beyond the .proto files: the metadata they exchange.

The contracts themselves are the ``.proto`` files in ``protos/`` (and their generated code). This
module holds the rest of the wire protocol, once, for both sides: the server (``server.calls``,
``server.auth``) and the client (``client``) import it, and it imports nothing. It is its own tiny
package, rather than a module inside ``protos/``, because ``protos/`` is generated code (rebuilt by
``make``, excluded from lint and type checks), and because the client must not import ``server``.
"""

from __future__ import annotations

__all__ = ["AUTHORIZATION_KEY", "BEARER", "REQUEST_ID_KEY", "bearer"]

REQUEST_ID_KEY = "x-request-id"
"""Metadata key (and HTTP header) of a call's request id: sent by the client (or made by the
server), logged by the server, and echoed in the trailing metadata (or response headers)."""

AUTHORIZATION_KEY = "authorization"
"""Metadata key (and HTTP header) of the credentials: ``authorization: Bearer <token>``."""

BEARER = "Bearer"
"""The authorization scheme the server's token check accepts."""


def bearer(token: str) -> str:
    """The ``authorization`` value that carries ``token``."""
    return f"{BEARER} {token}"
