"""Connect and gRPC-Web on the HTTP edge, for browsers and generated clients (connectrpc).

``connect_edge(app, bindings, calls, token=..., cors=settings.cors)`` serves every bound RPC at its
gRPC path beside the edge's SSE routes; ``CorsSettings`` is ``Settings.cors``.
"""

from server.connect.edge import connect_edge
from server.connect.settings import CorsSettings

__all__ = ["CorsSettings", "connect_edge"]
