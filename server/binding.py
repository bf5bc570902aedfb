"""Binding RPCs of a protobuf service to mediator requests: the whole gRPC adapter.

A service is a few lines::

    ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=orders_streaming_mediator,
        unary=orders_request_mediator,
        rpcs=[Rpc("ProcessOrders", ProcessOrdersCommand, OrderProcessedResult),
              Rpc("GetOrder", GetOrderQuery, OrderView)],
    )

Server-streaming RPCs go to ``streaming.stream(request)``, one message per yielded item, written as
soon as the handler yields it; unary RPCs go to ``unary.send(request)``. The request body is decoded
here (an undecodable body is INVALID_ARGUMENT, not grpc's UNKNOWN), and every failure becomes a
status through :mod:`server.errors`, in :class:`server.calls.Call`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import typing

import grpc
import pydantic
from google.protobuf import message as proto_message
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from mediator import Request, RequestMediator, StreamingRequestMediator
from server.calls import CallRegistry, GrpcCallScope
from server.convert import BindingError, to_model, to_proto
from server.errors import ErrorCodes, FieldViolation, InvalidArgument, SlowConsumer
from server.stall import StallTimer

__all__ = ["BoundRpc", "Rpc", "ServiceBinding"]


@dataclasses.dataclass(frozen=True)
class Rpc:
    """One RPC of the service: its name in the .proto, and the mediator request and response models.

    ``response`` may also be the RPC's generated message class: the handler's items (or its result)
    are then written as they are, with no conversion.
    """

    name: str
    request: type[Request]
    # type[Response] | type[Message], spelled type[Any] until the HTTP edge (which reads it as a
    # pydantic model for OpenAPI and JSON) distinguishes the two.
    response: type[typing.Any]


class BoundRpc:
    """An RPC ready to serve: its descriptor, the converters, and its mediator."""

    def __init__(
        self,
        method: MethodDescriptor,
        rpc: Rpc,
        *,
        streaming: StreamingRequestMediator | None,
        unary: RequestMediator | None,
    ) -> None:
        if method.client_streaming:
            raise BindingError(f"{method.full_name}: client-streaming RPCs are not supported")
        self.method = method
        self.rpc = rpc
        self.path = f"/{method.containing_service.full_name}/{method.name}"
        self.request_class = message_factory.GetMessageClass(method.input_type)
        self.response_class = message_factory.GetMessageClass(method.output_type)
        self._to_request = to_model(method.input_type, rpc.request)
        self.to_message: typing.Callable[[pydantic.BaseModel], proto_message.Message] = to_proto(
            rpc.response, self.response_class
        )
        self.server_streaming = method.server_streaming
        if self.server_streaming and streaming is None:
            raise BindingError(f"{method.full_name} streams: its service needs a StreamingRequestMediator")
        if not self.server_streaming and unary is None:
            raise BindingError(f"{method.full_name} is unary: its service needs a RequestMediator")
        self.streaming = streaming
        self.unary = unary

    def decode(self, body: bytes) -> Request:
        """The request model for a raw request body; ``InvalidArgument``/``ValidationError`` if bad."""
        try:
            message = self.request_class.FromString(body)
        except proto_message.DecodeError as error:
            raise InvalidArgument(
                [FieldViolation("request", f"not a valid {self.method.input_type.full_name}: {error}")]
            ) from None
        return self._to_request(message)


class ServiceBinding:
    """A protobuf service whose RPCs are served by mediators."""

    def __init__(
        self,
        service: ServiceDescriptor,
        *,
        rpcs: typing.Sequence[Rpc],
        streaming: StreamingRequestMediator | None = None,
        unary: RequestMediator | None = None,
        settings_name: str | None = None,
        error_codes: ErrorCodes | None = None,
    ) -> None:
        self.service = service
        self.name = service.full_name
        self.settings_name = settings_name or service.full_name.split(".")[0]
        """What the service is called in settings (``[services.<name>]``), logs and metrics: the
        first part of its proto package unless given (``reports`` for ``reports.v1.ReportService``)."""
        self.streaming = streaming
        self.unary = unary
        self.error_codes: ErrorCodes = dict(error_codes or {})
        """The service's own exceptions and their codes: ``{QuotaExceeded: RESOURCE_EXHAUSTED}`` (rill's
        own errors and pydantic's map as :mod:`server.errors` says, whatever is given here)."""
        for error_type, code in self.error_codes.items():
            if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
                raise BindingError(
                    f"{self.name}: error_codes keys must be exception classes, not {error_type!r}"
                )
            if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
                raise BindingError(
                    f"{self.name}: {error_type.__name__} must map to an error code, not {code}"
                )
        methods = {method.name: method for method in service.methods}
        unknown = [rpc.name for rpc in rpcs if rpc.name not in methods]
        if unknown:
            raise BindingError(f"{self.name} has no RPC named {', '.join(unknown)}")
        self.rpcs = [BoundRpc(methods[rpc.name], rpc, streaming=streaming, unary=unary) for rpc in rpcs]
        unbound = sorted(set(methods) - {rpc.name for rpc in rpcs})
        if unbound:
            raise BindingError(f"{self.name}: no binding for {', '.join(unbound)}")

    def method_handlers(
        self, calls: CallRegistry, *, stall_timeout: float | None = None
    ) -> dict[str, grpc.RpcMethodHandler[typing.Any, typing.Any]]:
        """grpc method handlers for every RPC, keyed by method name.

        ``stall_timeout``: a stream whose next item waits longer than that for the client's
        flow-control window ends with RESOURCE_EXHAUSTED (:class:`server.errors.SlowConsumer`).
        """
        handlers: dict[str, grpc.RpcMethodHandler[typing.Any, typing.Any]] = {}
        for bound in self.rpcs:
            calls.kinds[bound.path] = "server_stream" if bound.server_streaming else "unary"
            if self.error_codes:
                calls.error_codes[bound.path] = self.error_codes
            serialize = bound.response_class.SerializeToString
            if bound.server_streaming:
                handlers[bound.method.name] = grpc.unary_stream_rpc_method_handler(
                    _stream_behaviour(bound, calls, stall_timeout),
                    request_deserializer=None,
                    response_serializer=serialize,
                )
            else:
                handlers[bound.method.name] = grpc.unary_unary_rpc_method_handler(
                    _unary_behaviour(bound, calls), request_deserializer=None, response_serializer=serialize
                )
        return handlers


Behaviour: typing.TypeAlias = typing.Callable[
    [bytes, grpc.aio.ServicerContext[typing.Any, typing.Any]], typing.Any
]


def _stream_behaviour(bound: BoundRpc, calls: CallRegistry, stall_timeout: float | None = None) -> Behaviour:
    mediator = typing.cast(StreamingRequestMediator, bound.streaming)
    to_message = bound.to_message

    async def serve(body: bytes, context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> None:
        with GrpcCallScope(calls, bound.path, context) as call:
            request = bound.decode(body)
            # grpc.aio never closes what it does not own: closing the mediator stream here, in this
            # task, is what runs the handler's `finally` promptly on cancel, deadline or error.
            items = mediator.stream(request)
            # A stall cancels this task; the cancellation is taken back below, as SlowConsumer.
            serving = typing.cast("asyncio.Task[None]", asyncio.current_task())
            watch = StallTimer(stall_timeout, serving.cancel) if stall_timeout is not None else None
            # How long each write waits for the client is needed by the stall watch and the metrics
            # (server.metrics) only; without both, the loop does no more than a servicer would.
            timed = watch is not None or call.series is not None
            try:
                async for item in items:
                    # The next item is asked for only once the transport took this one: the server
                    # holds one item per stream; the client's flow-control window holds the rest.
                    message = to_message(item)
                    if not timed:
                        await context.write(message)
                        call.items += 1
                        continue
                    since = time.monotonic()
                    if watch is not None:
                        watch.writing_since = since
                    await context.write(message)
                    if watch is not None:
                        watch.writing_since = None
                    call.sent(since)
            except asyncio.CancelledError:
                if watch is None or not watch.fired:
                    raise
                raise SlowConsumer(
                    f"the client took no item for {watch.seconds:g} s (after {call.items} items)"
                ) from None
            finally:
                if watch is not None:
                    watch.close()
                    if watch.fired:
                        serving.uncancel()  # the cancellation was ours, and has become SlowConsumer
                await items.aclose()  # what contextlib.aclosing does, without its two coroutines per call

    return serve


def _unary_behaviour(bound: BoundRpc, calls: CallRegistry) -> Behaviour:
    mediator = typing.cast(RequestMediator, bound.unary)
    to_message = bound.to_message

    async def serve(
        body: bytes, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> proto_message.Message | None:
        with GrpcCallScope(calls, bound.path, context) as call:
            response = to_message(await mediator.send(bound.decode(body)))
            call.sent()
            return response
        return None  # reached only when the call failed: its status is set, grpc sends no message

    return serve
