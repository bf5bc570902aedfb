"""The event paths that build a handler through a container's direct factory returning an awaitable
(dependency_injector with an async dependency) and are not the batch's inlined run: inside a
behaviour or an observer's scope (the dispatcher's ``run_built``), and under the batch's own
``event_handler_timeout`` timer (the target keeps the handler type, to tell the awaitable from the
instance). Each must agree with the plain path, as every path of ``test_fast_paths.py`` does."""

from __future__ import annotations

import typing

import pytest

from tests.mediator.test_fast_paths import AsyncProviders, Scoped, passing, run

AWAITABLE_PATHS: dict[str, dict[str, typing.Any]] = {
    "inside a behaviour": {"di_container": AsyncProviders(), "event_handler_behaviours": [passing]},
    "inside an observer's scope": {"di_container": AsyncProviders(), "observer": Scoped()},
    "under the batch's timer": {"di_container": AsyncProviders(), "event_handler_timeout": 30},
}


@pytest.mark.parametrize("path", list(AWAITABLE_PATHS))
@pytest.mark.parametrize("tag", ["ok", "fail"])
def test_a_handler_built_from_an_awaitable_agrees_with_the_plain_path(path: str, tag: str) -> None:
    expected_record, expected_error, expected_items = run({}, tag)
    record, error, items = run(AWAITABLE_PATHS[path], tag)
    assert (record, items) == (expected_record, expected_items)
    assert (type(error), str(error)) == (type(expected_error), str(expected_error))
    if tag == "ok":
        assert record == [f"{kind} {n}" for n in range(3) for kind in ("happened", "cascaded")]
