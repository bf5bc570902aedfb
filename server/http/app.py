"""The HTTP edge: every RPC with a ``google.api.http`` rule, served by the same mediators.

Streaming RPCs answer ``text/event-stream`` in the spec's shape: ``start``, one ``progress`` per item
(data: the response model's JSON, ``id:`` its index), then ``complete`` (or ``error``). The request
is validated and the stream's first step is taken before the response starts, so that everything
refused before the first item is an HTTP status (422 with the same field violations as the gRPC
``BadRequest``, 404, ...); a failure after that is an ``error`` event carrying the gRPC status name.
Statuses come from :func:`server.errors.status_for`, as on the gRPC side.

Each stream is one :class:`server.http.sse.SseStream`, which owns its call from the first step to
the last byte: a client that disconnects closes the mediator stream exactly as a gRPC cancel does
(the handler's ``finally`` runs and the events of delivered items are handled, in the call), one
that stops reading ends it after ``limits.stall_timeout``. Request bodies are bounded by
:mod:`server.http.body`, and every refusal, the framework's included, has the documented shape
(:mod:`server.http.problems`).
"""

from __future__ import annotations

import functools
import importlib.resources
import inspect
import typing

import fastapi
import pydantic
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from mediator import Request, RequestMediator, StreamingRequestMediator
from server.binding import ServiceBinding
from server.calls import REQUEST_ID_KEY, CallRegistry, HttpCallScope, request_id_from
from server.errors import FieldViolation, InvalidArgument, violations_from
from server.http.body import BodyLimitMiddleware
from server.http.page_routes import render_page
from server.http.problems import UNPARSABLE, problem_response
from server.http.routes import HttpRoute, routes_of
from server.http.sse import SseStream, error_response

__all__ = ["create_http_app"]


def _request_from(route: HttpRoute, values: dict[str, typing.Any]) -> Request:
    body = values.pop("body", None)
    data = body.model_dump() if isinstance(body, pydantic.BaseModel) else {}
    data.update(values)
    return route.rpc.rpc.request.model_validate(data)


def _signature(route: HttpRoute) -> inspect.Signature:
    model = route.rpc.rpc.request
    parameters = [
        inspect.Parameter("http_request", inspect.Parameter.KEYWORD_ONLY, annotation=fastapi.Request)
    ]
    parameters += [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=typing.Annotated[str, fastapi.Path()]
        )
        for name in route.path_fields
    ]
    if route.body == "*":
        parameters.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=model))
    elif not route.path_fields:
        parameters.append(
            inspect.Parameter(
                "body", inspect.Parameter.KEYWORD_ONLY, annotation=typing.Annotated[model, fastapi.Query()]
            )
        )
    return inspect.Signature(parameters)


def _stream_endpoint(
    route: HttpRoute, calls: CallRegistry, ping: float, stall_timeout: float | None
) -> typing.Callable[..., typing.Any]:
    mediator = typing.cast(StreamingRequestMediator, route.rpc.streaming)

    async def endpoint(http_request: fastapi.Request, **values: typing.Any) -> fastapi.Response:
        # The response owns the call from here to its last byte (server.http.sse).
        request_id = request_id_from(http_request.headers.get(REQUEST_ID_KEY))
        track = functools.partial(
            HttpCallScope, calls, route.rpc.path, request_id, carrier=http_request.headers
        )
        return SseStream(
            lambda: mediator.stream(_request_from(route, values)),
            track,
            request_id,
            ping=ping,
            stall_timeout=stall_timeout,
        )

    endpoint.__signature__ = _signature(route)  # type: ignore[attr-defined]
    endpoint.rpc_path = route.rpc.path  # type: ignore[attr-defined]  # for refusals before the endpoint
    return endpoint


def _unary_endpoint(route: HttpRoute, calls: CallRegistry) -> typing.Callable[..., typing.Any]:
    mediator = typing.cast(RequestMediator, route.rpc.unary)

    async def endpoint(http_request: fastapi.Request, **values: typing.Any) -> fastapi.Response:
        request_id = request_id_from(http_request.headers.get(REQUEST_ID_KEY))
        with HttpCallScope(calls, route.rpc.path, request_id, carrier=http_request.headers) as call:
            try:
                response = await mediator.send(_request_from(route, values))
            except Exception as error:
                return error_response(call.failed(error), request_id)
            except BaseException:
                call.cancelled()
                raise
            call.sent()
            call.succeeded()
            return JSONResponse(response.model_dump(mode="json"), headers={REQUEST_ID_KEY: request_id})

    endpoint.__signature__ = _signature(route)  # type: ignore[attr-defined]
    endpoint.rpc_path = route.rpc.path  # type: ignore[attr-defined]  # for refusals before the endpoint
    return endpoint


def _docs(route: HttpRoute) -> dict[str, typing.Any]:
    method = route.rpc.method
    response = route.rpc.rpc.response
    summary = f"{method.containing_service.name}.{method.name}"
    if not route.rpc.server_streaming:
        return {"summary": summary, "response_model": response}
    schema = response.model_json_schema()
    return {
        "summary": summary,
        "description": (
            "Server-Sent Events: `start`, one `progress` per item (data: "
            f"`{response.__name__}`, id: its index), then `complete`, or `error` with the status."
        ),
        "response_class": EventSourceResponse,
        "responses": {
            200: {"content": {"text/event-stream": {"schema": schema}}, "description": "the stream"}
        },
    }


def create_http_app(
    bindings: typing.Sequence[ServiceBinding],
    calls: CallRegistry,
    *,
    ping_seconds: float = 15.0,
    stall_timeout: float | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    metrics: CollectorRegistry | None = None,
) -> fastapi.FastAPI:
    """The FastAPI application serving every annotated RPC of ``bindings``, the page and the docs
    (and ``/metrics``, Prometheus's text format, when given a ``metrics`` registry).

    ``stall_timeout``: an SSE stream whose client takes nothing for that long ends
    RESOURCE_EXHAUSTED, as a gRPC stream does; ``max_body_bytes``: larger request bodies are 413.
    """
    app = fastapi.FastAPI(
        title=f"rill: {', '.join(binding.name for binding in bindings)}",
        description="The gRPC services' streams as Server-Sent Events (routes from google.api.http rules).",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)

    def refuse(request: fastapi.Request, refused: InvalidArgument) -> JSONResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_KEY))
        # Counted and traced under its RPC's name, as the same refusal over gRPC is.
        method = getattr(getattr(request.scope.get("route"), "endpoint", None), "rpc_path", request.url.path)
        with HttpCallScope(calls, method, request_id, carrier=request.headers) as call:
            return error_response(call.failed(refused), request_id)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: fastapi.Request, error: RequestValidationError) -> JSONResponse:
        return refuse(request, InvalidArgument(violations_from(error.errors(), skip=1)))  # skip "body"...

    @app.exception_handler(HTTPException)
    async def framework_refusal(request: fastapi.Request, error: HTTPException) -> JSONResponse:
        # One shape everywhere (server.http.problems), never FastAPI's {"detail": ...}.
        if error.status_code == 400:  # FastAPI's "There was an error parsing the body"
            return refuse(request, InvalidArgument([FieldViolation("request", UNPARSABLE)]))
        request_id = request_id_from(request.headers.get(REQUEST_ID_KEY))
        return problem_response(error.status_code, str(error.detail), request_id, **(error.headers or {}))

    for binding in bindings:
        for route in routes_of(binding):
            endpoint = (
                _stream_endpoint(route, calls, ping_seconds, stall_timeout)
                if route.rpc.server_streaming
                else _unary_endpoint(route, calls)
            )
            app.add_api_route(
                route.path,
                endpoint,
                methods=[route.verb],
                name=f"{route.rpc.method.full_name} ({route.verb})",
                tags=[binding.name],
                **_docs(route),
            )

    template = importlib.resources.files("server.http").joinpath("page.html").read_text(encoding="utf-8")
    page = render_page(template, bindings)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    if metrics is not None:
        registry = metrics

        @app.get("/metrics", include_in_schema=False)
        async def scrape() -> fastapi.Response:
            # On the loop that updates the series: a scrape sees every call's state at one instant.
            return fastapi.Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
