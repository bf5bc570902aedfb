"""The HTTP edge: every RPC with a ``google.api.http`` rule, served by the same mediators.

Streaming RPCs answer ``text/event-stream`` in the spec's shape: ``start``, one ``progress`` per item
(data: the response model's JSON, ``id:`` its index), then ``complete`` (or ``error``). The request
is validated and the stream's first step is taken before the response starts, so that everything
refused before the first item is an HTTP status (422 with the same field violations as the gRPC
``BadRequest``, 404, ...); a failure after that is an ``error`` event carrying the gRPC status name.
Statuses come from :func:`server.errors.status_for`, as on the gRPC side.

A client that disconnects closes the mediator stream exactly as a gRPC cancel does: the handler's
``finally`` runs and the events of delivered items are handled (the mediator's drain).
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import time
import typing

import anyio
import fastapi
import pydantic
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from mediator import Request, RequestMediator, Response, StreamingRequestMediator
from server.binding import ServiceBinding
from server.calls import REQUEST_ID_KEY, Call, CallRegistry, request_id_from
from server.errors import InvalidArgument, Status, violations_from
from server.http.routes import HttpRoute, routes_of

__all__ = ["create_http_app"]

_END: typing.Any = object()


def _error_response(status: Status, request_id: str) -> JSONResponse:
    return JSONResponse(status.to_json(), status.http_status, headers={REQUEST_ID_KEY: request_id})


class _MediatorEvents:
    """One SSE stream: owns the mediator stream and the tracked call until it is closed."""

    def __init__(
        self,
        first: Response,
        stream: typing.AsyncGenerator[Response, None],
        call: Call,
        release: typing.Callable[[], None],
    ) -> None:
        self._first = first
        self._stream = stream
        self._call = call
        self._release = release
        self._ended = False

    async def events(self) -> typing.AsyncGenerator[ServerSentEvent, None]:
        call = self._call
        yield ServerSentEvent(
            event="start", data=json.dumps({"message": "Processing...", "request_id": call.request_id})
        )
        item = self._first
        try:
            while item is not _END:
                since = time.monotonic()
                yield ServerSentEvent(event="progress", id=str(call.items), data=item.model_dump_json())
                call.sent(since)
                item = await anext(self._stream, _END)
        except Exception as error:  # after the first item: reported in the stream, then it ends
            status = call.failed(error)
            self._ended = True
            yield ServerSentEvent(event="error", data=json.dumps(status.to_json()))
            return
        self._ended = True
        call.succeeded()
        yield ServerSentEvent(event="complete", id=str(call.items), data=json.dumps({"items": call.items}))

    async def close(self) -> None:
        """Close the mediator stream (draining its events), whatever ended the response."""
        # anyio cancellation is level-triggered: without the shield, every await of the mediator's
        # drain would be cancelled again, cutting short the events of delivered items.
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            finally:
                if not self._ended:
                    self._call.cancelled()
                self._release()


class _StreamResponse(EventSourceResponse):
    """An SSE response that closes its mediator stream however the response ends."""

    def __init__(self, stream: _MediatorEvents, request_id: str, ping: float) -> None:
        self._events = stream.events()
        super().__init__(self._events, ping=ping, headers={REQUEST_ID_KEY: request_id})
        self._mediator_events = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()
            await self._mediator_events.close()


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


def _stream_endpoint(route: HttpRoute, calls: CallRegistry, ping: float) -> typing.Callable[..., typing.Any]:
    mediator = typing.cast(StreamingRequestMediator, route.rpc.streaming)

    async def endpoint(http_request: fastapi.Request, **values: typing.Any) -> fastapi.Response:
        request_id = request_id_from(http_request.headers.get(REQUEST_ID_KEY))
        tracker = calls.track(route.rpc.path, request_id, transport="http", carrier=http_request.headers)
        call = tracker.__enter__()
        release = typing.cast(typing.Callable[[], None], lambda: tracker.__exit__(None, None, None))
        stream: typing.AsyncGenerator[Response, None] | None = None
        try:
            # The stream's event-handler runs take this context (the call's span and request id).
            with call.current():
                stream = mediator.stream(_request_from(route, values))
                first = await anext(stream, _END)
        except Exception as error:
            status = call.failed(error)
            await _close_quietly(stream)
            release()
            return _error_response(status, request_id)
        except BaseException:
            call.cancelled()
            await _close_quietly(stream)
            release()
            raise
        return _StreamResponse(_MediatorEvents(first, stream, call, release), request_id, ping)

    endpoint.__signature__ = _signature(route)  # type: ignore[attr-defined]
    endpoint.rpc_path = route.rpc.path  # type: ignore[attr-defined]  # for refusals before the endpoint
    return endpoint


async def _close_quietly(stream: typing.AsyncGenerator[Response, None] | None) -> None:
    if stream is not None:
        with anyio.CancelScope(shield=True):
            await stream.aclose()


def _unary_endpoint(route: HttpRoute, calls: CallRegistry) -> typing.Callable[..., typing.Any]:
    mediator = typing.cast(RequestMediator, route.rpc.unary)

    async def endpoint(http_request: fastapi.Request, **values: typing.Any) -> fastapi.Response:
        request_id = request_id_from(http_request.headers.get(REQUEST_ID_KEY))
        with calls.track(route.rpc.path, request_id, transport="http", carrier=http_request.headers) as call:
            try:
                with call.current():
                    response = await mediator.send(_request_from(route, values))
            except Exception as error:
                return _error_response(call.failed(error), request_id)
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
    metrics: CollectorRegistry | None = None,
) -> fastapi.FastAPI:
    """The FastAPI application serving every annotated RPC of ``bindings``, the page and the docs
    (and ``/metrics``, Prometheus's text format, when given a ``metrics`` registry)."""
    app = fastapi.FastAPI(
        title="rill",
        description="The gRPC services' streams as Server-Sent Events (routes from google.api.http rules).",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: fastapi.Request, error: RequestValidationError) -> JSONResponse:
        request_id = request_id_from(request.headers.get(REQUEST_ID_KEY))
        # Counted and traced under its RPC's name, as the same refusal over gRPC is.
        method = getattr(getattr(request.scope.get("route"), "endpoint", None), "rpc_path", request.url.path)
        with calls.track(method, request_id, transport="http", carrier=request.headers) as call:
            refused = InvalidArgument(violations_from(error.errors(), skip=1))  # skip "body"/"query"/"path"
            return _error_response(call.failed(refused), request_id)

    for binding in bindings:
        for route in routes_of(binding):
            endpoint = (
                _stream_endpoint(route, calls, ping_seconds)
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

    page = importlib.resources.files("server.http").joinpath("page.html").read_text(encoding="utf-8")

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
