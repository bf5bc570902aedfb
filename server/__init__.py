"""rill's gRPC service: the mediator's streams served as server-streaming RPCs."""

from server.app import RillServer, create_server
from server.settings import Settings, load_settings

__all__ = ["RillServer", "Settings", "create_server", "load_settings"]
