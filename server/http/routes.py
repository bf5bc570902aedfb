"""HTTP routes read from the contract: each RPC's ``google.api.http`` annotation (gRPC transcoding).

``option (google.api.http) = { post: "/v1/orders:process" body: "*" additional_bindings { get: ... } }``
on an RPC is all it takes for the HTTP edge to serve it; no route is written by hand.
"""

from __future__ import annotations

import dataclasses
import re

from google.api import annotations_pb2, http_pb2

from server.binding import BoundRpc, ServiceBinding
from server.convert import BindingError

__all__ = ["HttpRoute", "routes_of"]

_VERBS = ("get", "post", "put", "patch", "delete")
_VARIABLE = re.compile(r"\{([^}]*)\}")


@dataclasses.dataclass(frozen=True)
class HttpRoute:
    """One HTTP binding of an RPC."""

    verb: str
    path: str
    body: str
    """``*`` when the request model comes from the JSON body; empty when it comes from the query."""
    path_fields: tuple[str, ...]
    rpc: BoundRpc


def _route(rule: http_pb2.HttpRule, rpc: BoundRpc) -> HttpRoute:
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        raise BindingError(f"{rpc.method.full_name}: unsupported HTTP rule pattern {verb!r}")
    path: str = getattr(rule, verb)
    fields = tuple(_VARIABLE.findall(path))
    unknown = [f for f in fields if "=" in f or f not in rpc.rpc.request.model_fields]
    if unknown:
        raise BindingError(f"{rpc.method.full_name}: path variables {unknown} are not plain request fields")
    if rule.body not in ("", "*"):
        raise BindingError(f'{rpc.method.full_name}: only body "*" or no body is supported')
    return HttpRoute(verb.upper(), path, rule.body, fields, rpc)


def routes_of(binding: ServiceBinding) -> list[HttpRoute]:
    """Every HTTP binding the service's RPCs declare, in declaration order."""
    routes = []
    for rpc in binding.rpcs:
        options = rpc.method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        rule = options.Extensions[annotations_pb2.http]
        routes.append(_route(rule, rpc))
        routes += [_route(extra, rpc) for extra in rule.additional_bindings]
    return routes
