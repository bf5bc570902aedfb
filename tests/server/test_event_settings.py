"""The per-service event settings: the ceiling, one stream's share of it, and their checks."""

import pydantic
import pytest

from server import Settings, create_server
from server.settings import ServiceSettings


@pytest.mark.parametrize(("ceiling", "share"), [(10, 5), (3, 2), (1, 1), (2, 1)])
def test_one_stream_gets_half_the_ceiling_rounded_up_by_default(ceiling: int, share: int) -> None:
    assert ServiceSettings(max_concurrent_event_handlers=ceiling).per_stream_share == share


def test_a_share_above_the_ceiling_is_refused_naming_both() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"per_stream \(11\) cannot exceed .*\(10\)"):
        ServiceSettings(max_concurrent_event_handlers_per_stream=11)


async def test_the_server_builds_its_mediators_with_the_share() -> None:
    settings = Settings(
        address="127.0.0.1:0",
        http_address="",
        orders=ServiceSettings(max_concurrent_event_handlers=8),
        files=ServiceSettings(max_concurrent_event_handlers=8, max_concurrent_event_handlers_per_stream=8),
    )
    server = create_server(settings)
    try:
        assert server.mediators["orders"].max_concurrent_event_handlers == 8
        assert server.mediators["orders"].max_concurrent_event_handlers_per_stream == 4
        assert server.mediators["files"].max_concurrent_event_handlers_per_stream == 8
    finally:
        await server.stop(grace=0)
