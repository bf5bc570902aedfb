"""connectrpc endpoints for every bound RPC, served by the RPC's mediator.

The same binding the gRPC port serves (:class:`server.binding.BoundRpc`): its request is decoded
by ``BoundRpc.decode`` and its items converted by ``BoundRpc.to_message``, inside one
:class:`server.connect.calls.ConnectCallScope` (counted, measured, traced, status-mapped).

A stream asks its mediator for the next item only once connectrpc has handed the previous one to
the connection (the generator resumes after the send): the server holds one item per stream. A
client that goes away cancels the call where it waits (connectrpc watches for the disconnect), and
the mediator stream is closed in this task, so the handler's ``finally`` runs and the events of
delivered items are handled, as on the gRPC port.
"""

from __future__ import annotations

import time
import typing

from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf import descriptor_pb2
from google.protobuf import message as proto_message

from mediator import RequestMediator, StreamingRequestMediator
from server.binding import BoundRpc, ServiceBinding
from server.calls import CallRegistry
from server.connect.calls import ConnectCallScope
from server.connect.codecs import RawBody, to_binary

__all__ = ["endpoints_of"]

Message: typing.TypeAlias = proto_message.Message
Context: typing.TypeAlias = RequestContext[RawBody, Message]

_IDEMPOTENCY = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: IdempotencyLevel.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: IdempotencyLevel.IDEMPOTENT,
}


def _method_info(bound: BoundRpc) -> MethodInfo[RawBody, Message]:
    level = bound.method.GetOptions().idempotency_level
    return MethodInfo(
        name=bound.method.name,
        service_name=bound.method.containing_service.full_name,
        input=RawBody,
        output=bound.response_class,
        idempotency_level=_IDEMPOTENCY.get(level, IdempotencyLevel.UNKNOWN),
        stream_type=StreamType.SERVER_STREAM if bound.server_streaming else StreamType.UNARY,
    )


def _stream_endpoint(bound: BoundRpc, calls: CallRegistry) -> Endpoint[RawBody, Message]:
    mediator = typing.cast(StreamingRequestMediator, bound.streaming)
    to_message = bound.to_message
    request_class = bound.request_class

    async def serve(body: RawBody, context: Context) -> typing.AsyncIterator[Message]:
        with ConnectCallScope(calls, bound.path, context) as call:
            items = mediator.stream(bound.decode(to_binary(body, request_class)))
            try:
                async for item in items:
                    message = to_message(item)
                    since = time.monotonic()
                    yield message  # resumed once connectrpc has sent it: the time is the client's
                    call.sent(since)
            finally:
                await items.aclose()

    return Endpoint.server_stream(_method_info(bound), serve)


def _unary_endpoint(bound: BoundRpc, calls: CallRegistry) -> Endpoint[RawBody, Message]:
    mediator = typing.cast(RequestMediator, bound.unary)
    to_message = bound.to_message
    request_class = bound.request_class

    async def serve(body: RawBody, context: Context) -> Message:
        with ConnectCallScope(calls, bound.path, context) as call:
            response = to_message(await mediator.send(bound.decode(to_binary(body, request_class))))
            call.sent()
            return response

    return Endpoint.unary(_method_info(bound), serve)


def endpoints_of(
    bindings: typing.Iterable[ServiceBinding], calls: CallRegistry
) -> dict[str, Endpoint[RawBody, Message]]:
    """Every RPC of ``bindings`` as a connectrpc endpoint, keyed by its path (``/pkg.Service/Method``)."""
    endpoints: dict[str, Endpoint[RawBody, Message]] = {}
    for binding in bindings:
        for bound in binding.rpcs:
            calls.kinds[bound.path] = "server_stream" if bound.server_streaming else "unary"
            endpoints[bound.path] = (
                _stream_endpoint(bound, calls) if bound.server_streaming else _unary_endpoint(bound, calls)
            )
    return endpoints
