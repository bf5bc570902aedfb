"""connectrpc codecs for grpcio-generated (google.protobuf) messages.

connectrpc's default codecs speak its own protobuf runtime (protobuf-py); ours decode nothing: a
request message arrives as :class:`RawBody` (its bytes and its format) and is decoded by the RPC's
:meth:`server.binding.BoundRpc.decode` inside the call, so an undecodable body is counted, logged
and refused INVALID_ARGUMENT exactly as on the gRPC port. Responses are google.protobuf messages,
encoded with ``SerializeToString`` or ``json_format`` (proto3 JSON, lowerCamelCase names).
"""

from __future__ import annotations

import dataclasses
import typing

from google.protobuf import json_format
from google.protobuf import message as proto_message

from server.errors import FieldViolation, InvalidArgument

__all__ = ["JSON", "PROTO", "RawBody", "codecs", "to_binary"]

PROTO = "proto"
JSON = "json"


@dataclasses.dataclass(frozen=True, slots=True)
class RawBody:
    """One request message as it came: ``data`` in ``format`` (``proto`` or ``json``)."""

    data: bytes
    format: str


class _Codec:
    """One of connectrpc's ``Codec``s: ``name()``, ``encode``, ``decode``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def decode(self, data: bytes | bytearray, message_class: type[typing.Any]) -> RawBody:
        return RawBody(bytes(data), self._name)

    def encode(self, message: proto_message.Message) -> bytes:
        if self._name == PROTO:
            return message.SerializeToString()
        return json_format.MessageToJson(message, indent=None).encode()


def codecs() -> list[_Codec]:
    """The codecs the edge serves: binary protobuf and proto3 JSON."""
    return [_Codec(PROTO), _Codec(JSON)]


def to_binary(body: RawBody, message_class: type[proto_message.Message]) -> bytes:
    """The binary form of ``body`` (JSON is parsed; ``InvalidArgument`` if it is not valid)."""
    if body.format == PROTO:
        return body.data
    message = message_class()
    try:
        # Unknown fields are ignored, as Connect's servers do, so that newer clients keep working.
        json_format.Parse(body.data or b"{}", message, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InvalidArgument(
            [FieldViolation("request", f"not a valid {message.DESCRIPTOR.full_name} in JSON: {error}")]
        ) from None
    return message.SerializeToString()
