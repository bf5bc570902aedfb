"""The HTTP edge: the gRPC services' streams as Server-Sent Events, a web page, OpenAPI docs."""

from server.http.app import create_http_app
from server.http.server import HttpServer

__all__ = ["HttpServer", "create_http_app"]
