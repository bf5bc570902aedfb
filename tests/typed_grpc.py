"""Typed access to what grpc's stubs (typeshed's types-grpcio) leave loose, for tests and benchmarks.

- ``call.read()`` is typed ``object``: a message or ``grpc.aio.EOF``. :func:`read` is the next
  message, typed as the call's, when the test expects one; :func:`read_or_none` is None at the end.
- grpc_health's ``HealthStub`` is declared without its methods, grpc_reflection's
  ``ServerReflectionStub`` with an untyped one and for a synchronous channel only (the generated
  classes add them when they are made, over either channel). :func:`health_stub` and
  :func:`reflection_stub` give them their RPCs as ``grpc.aio`` makes them.
- ``rpc_status.from_call`` takes a ``grpc.Call``; an ``AioRpcError`` is not one for the stubs but has
  what it reads (code, details, trailing metadata). :func:`rich_status` takes the error.
"""

from __future__ import annotations

import typing

import grpc
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

__all__ = [
    "HealthStub",
    "ReflectionStub",
    "health_stub",
    "read",
    "read_or_none",
    "reflection_stub",
    "rich_status",
]

T = typing.TypeVar("T")

Reading: typing.TypeAlias = (
    "grpc.aio.UnaryStreamCall[typing.Any, T] | grpc.aio.StreamStreamCall[typing.Any, T]"
)
"""A call whose responses are read one by one."""


async def read(call: Reading[T]) -> T:
    """The call's next message (the test fails if the stream ended instead)."""
    message = await call.read()
    assert message is not grpc.aio.EOF, "the stream ended where a message was expected"
    return typing.cast(T, message)  # not EOF: one of the call's messages


async def read_or_none(call: Reading[T]) -> T | None:
    """The call's next message, or None once the stream has ended (``grpc.aio.EOF``)."""
    message = await call.read()
    return None if message is grpc.aio.EOF else typing.cast(T, message)


class HealthStub(typing.Protocol):
    """``grpc_health.v1.health_pb2_grpc.HealthStub`` over a ``grpc.aio`` channel."""

    Check: grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    Watch: grpc.aio.UnaryStreamMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


def health_stub(channel: grpc.aio.Channel) -> HealthStub:
    # The generated stub sets Check and Watch in its __init__, which the stubs do not declare.
    return typing.cast(HealthStub, health_pb2_grpc.HealthStub(channel))


class ReflectionStub(typing.Protocol):
    """``grpc_reflection.v1alpha.reflection_pb2_grpc.ServerReflectionStub`` over a ``grpc.aio`` channel."""

    ServerReflectionInfo: grpc.aio.StreamStreamMultiCallable[
        reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
    ]


def reflection_stub(channel: grpc.aio.Channel) -> ReflectionStub:
    # The generated stub only calls channel.stream_stream(...), which a grpc.aio channel has too.
    stub = reflection_pb2_grpc.ServerReflectionStub(typing.cast(grpc.Channel, channel))
    return typing.cast(ReflectionStub, stub)


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` in the error's trailers, if the server sent one."""
    status: status_pb2.Status | None = rpc_status.from_call(typing.cast(grpc.Call, error))
    return status
