"""rill's gRPC service: the mediator's streams served as server-streaming RPCs (and over HTTP/SSE).

The names below are loaded on first use, so that importing a light module of the package (e.g.
``server.convert`` or ``server.services``) does not load the whole server stack.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from server.app import RillServer, create_server
    from server.binding import Rpc, ServiceBinding
    from server.settings import ServiceSettings, Settings, load_settings

__all__ = [
    "RillServer",
    "Rpc",
    "ServiceBinding",
    "ServiceSettings",
    "Settings",
    "create_server",
    "load_settings",
]

_WHERE = {
    "RillServer": "server.app",
    "create_server": "server.app",
    "Rpc": "server.binding",
    "ServiceBinding": "server.binding",
    "ServiceSettings": "server.settings",
    "Settings": "server.settings",
    "load_settings": "server.settings",
}


def __getattr__(name: str) -> typing.Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
