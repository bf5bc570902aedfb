"""The Connect and gRPC-Web wire formats, read by hand as a client library would (the tests'
own decoder, independent of the server's): envelopes, the end-of-stream message, trailers."""

from __future__ import annotations

import base64
import json
import struct
import typing

from google.protobuf import message as proto_message
from google.rpc import error_details_pb2, status_pb2

END_STREAM = 0x02  # Connect: the end-of-stream message's flag
TRAILERS = 0x80  # gRPC-Web: the trailers frame's flag


def envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """Every (flags, data) envelope of a response body."""
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def unpadded_b64decode(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


def text_decode(body: bytes) -> bytes:
    """gRPC-Web text: padded base64 segments one after another."""
    out, rest = b"", body
    while rest:
        end = rest.find(b"=")
        if end < 0:
            out, rest = out + base64.b64decode(rest), b""
            continue
        while end < len(rest) and rest[end : end + 1] == b"=":
            end += 1
        out, rest = out + base64.b64decode(rest[:end]), rest[end:]
    return out


def trailers(data: bytes) -> dict[str, str]:
    """A gRPC-Web trailers frame as a dict."""
    lines = [line for line in data.decode().split("\r\n") if line]
    return {key.strip().lower(): value.strip() for key, value in (line.split(":", 1) for line in lines)}


def connect_violations(error: dict[str, typing.Any]) -> list[tuple[str, str]]:
    """The field violations of a Connect error JSON's google.rpc.BadRequest details."""
    violations = []
    for detail in error.get("details", []):
        assert detail["type"] == "google.rpc.BadRequest"
        bad_request = error_details_pb2.BadRequest.FromString(unpadded_b64decode(detail["value"]))
        violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


def grpc_web_status(headers: typing.Mapping[str, str]) -> tuple[int, list[tuple[str, str]]]:
    """The code and field violations of gRPC-Web trailers (``grpc-status-details-bin``)."""
    code = int(headers["grpc-status"])
    details = headers.get("grpc-status-details-bin")
    if not details:
        return code, []
    status = status_pb2.Status.FromString(unpadded_b64decode(details))
    assert status.code == code
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        violations += [(v.field, v.description) for v in bad_request.field_violations]
    return code, violations


def grpc_web_trailers(response: typing.Any) -> dict[str, str]:
    """A gRPC-Web response's status: its trailers frame, or its headers for a trailers-only answer."""
    final = [data for flags, data in frames(response.content) if flags & TRAILERS]
    if final:
        return trailers(final[-1])
    return {key.lower(): value for key, value in response.headers.items()}


def json_messages(body: bytes) -> tuple[list[dict[str, typing.Any]], dict[str, typing.Any]]:
    """A connect+json stream: its messages and its end-of-stream message."""
    messages, end = [], None
    for flags, data in frames(body):
        if flags & END_STREAM:
            end = json.loads(data)
        else:
            messages.append(json.loads(data))
    assert end is not None, "no end-of-stream message"
    return messages, end


M = typing.TypeVar("M", bound=proto_message.Message)


def proto_messages(body: bytes, message_class: type[M], *, end_flag: int) -> tuple[list[M], bytes]:
    """A binary stream: its messages, and the data of its final (end or trailers) frame."""
    messages, end = [], None
    for flags, data in frames(body):
        if flags & end_flag:
            end = data
        else:
            messages.append(message_class.FromString(data))
    assert end is not None, "no final frame"
    return messages, end
