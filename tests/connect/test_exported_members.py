"""The public surface of server.connect, pinned."""

from __future__ import annotations

import server.connect


def test_server_connect_exports_exactly_its_public_names() -> None:
    assert sorted(server.connect.__all__) == ["CorsSettings", "connect_edge"]
    for name in server.connect.__all__:
        assert getattr(server.connect, name) is not None
