"""gRPC-Web's text mode (``application/grpc-web-text``): base64 on the wire, over the binary mode.

connectrpc serves ``application/grpc-web+proto`` but not the text mode, which some browser
clients (Google's grpc-web with ``mode=grpcwebtext``) use for streams. The text mode is the
binary mode base64-encoded, nothing else (PROTOCOL-WEB.md), so this middleware translates: the
request body is decoded and its content type rewritten to the binary one, and every chunk of the
response body is encoded on its own (padded, as the protocol allows: clients decode a stream of
padded segments), so each item still leaves as soon as it is sent.
"""

from __future__ import annotations

import base64
import binascii
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["GrpcWebTextMiddleware", "decode_segments", "is_grpc_web_text"]

TEXT = "application/grpc-web-text"
_BINARY = b"application/grpc-web+proto"
_SEGMENT = re.compile(rb"[^=]*=*")


def is_grpc_web_text(content_type: str) -> bool:
    return content_type == TEXT or content_type.startswith(TEXT + "+")


def decode_segments(data: bytes) -> bytes:
    """Decode base64 made of padded segments one after another (``binascii.Error`` if invalid)."""
    data = b"".join(data.split())
    return b"".join(base64.b64decode(segment, validate=True) for segment in _SEGMENT.findall(data) if segment)


class GrpcWebTextMiddleware:
    """Serves a gRPC-Web text request with ``app``, which speaks gRPC-Web binary."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (key, _BINARY) if key == b"content-type" else (key, value) for key, value in scope["headers"]
        ]
        read = False

        async def receive_binary() -> Message:
            # The whole request body (one small request message), decoded at once; after it,
            # receive() goes on delivering what comes next (the client's disconnect).
            nonlocal read
            if read:
                return await receive()
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            read = True
            try:
                body = decode_segments(b"".join(chunks))
            except binascii.Error:
                body = b"\xff"  # not a gRPC-Web frame: refused as a protocol error by connectrpc
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_text(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [_text_header(key, value) for key, value in message["headers"]],
                }
            elif message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": base64.b64encode(message["body"])}
            await send(message)

        await self.app({**scope, "headers": headers}, receive_binary, send_text)


def _text_header(key: bytes, value: bytes) -> tuple[bytes, bytes]:
    if key.lower() == b"content-type" and value.startswith(b"application/grpc-web"):
        return key, b"application/grpc-web-text" + value[len(b"application/grpc-web") :]
    return key, value
