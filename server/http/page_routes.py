"""What the page at ``/`` offers: the application's streaming routes that take a list of ids.

The page is the same for every application: it is handed, as JSON, each server-streaming ``POST``
route whose request has a list-of-strings field (the ids to type in) and whose response has a string
field to show as the row's id. Other routes are served all the same, and listed in ``/docs``.
"""

from __future__ import annotations

import html
import json
import typing

import pydantic

from server.binding import ServiceBinding
from server.http.routes import HttpRoute, routes_of

__all__ = ["page_routes", "render_page"]


def _plain(annotation: object) -> object:
    """``annotation`` without ``Annotated[...]``'s constraints."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_list_of_str(annotation: object) -> bool:
    annotation = _plain(annotation)
    return typing.get_origin(annotation) is list and [_plain(a) for a in typing.get_args(annotation)] == [str]


def _list_field(model: type[pydantic.BaseModel]) -> str | None:
    for name, field in model.model_fields.items():
        if _is_list_of_str(field.annotation):
            return name
    return None


def _id_field(model: type[pydantic.BaseModel]) -> str | None:
    for name, field in model.model_fields.items():
        if _plain(field.annotation) is str:
            return name
    return None


def page_routes(bindings: typing.Sequence[ServiceBinding]) -> list[dict[str, str]]:
    """The routes the page can drive, keyed by the service's settings name (unique per RPC)."""
    offered: list[dict[str, str]] = []
    for binding in bindings:
        candidates: list[tuple[HttpRoute, str, str]] = []
        for route in routes_of(binding):
            if not route.rpc.server_streaming or route.verb != "POST" or route.path_fields:
                continue
            request, response = route.rpc.rpc.request, route.rpc.rpc.response
            if not (isinstance(response, type) and issubclass(response, pydantic.BaseModel)):
                continue
            ids, shown = _list_field(request), _id_field(response)
            if ids is not None and shown is not None:
                candidates.append((route, ids, shown))
        for route, ids, shown in candidates:
            key = (
                binding.settings_name
                if len(candidates) == 1
                else f"{binding.settings_name}.{route.rpc.method.name}"
            )
            offered.append(
                {
                    "key": key,
                    "label": f"{binding.service.name}: {route.rpc.method.name}",
                    "path": route.path,
                    "field": ids,
                    "id": shown,
                }
            )
    return offered


def render_page(template: str, bindings: typing.Sequence[ServiceBinding]) -> str:
    """The page for ``bindings``: its title and its routes filled in."""
    title = ", ".join(binding.name for binding in bindings)
    routes = json.dumps(page_routes(bindings)).replace("</", "<\\/")  # safe inside <script>
    return template.replace("{{title}}", html.escape(title)).replace("{{routes}}", routes)
