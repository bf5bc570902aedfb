"""``Settings.outbox``: the relay's settings from the environment (``RILL_OUTBOX__…``) and TOML."""

from __future__ import annotations

import pathlib

import pydantic
import pytest

from server.settings import load_settings
from server.store.outbox_settings import OutboxSettings


def test_the_environment_sets_the_relay_through_the_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RILL_OUTBOX__MAX_ATTEMPTS", "3")
    monkeypatch.setenv("RILL_OUTBOX__POLL_INTERVAL", "0.25")

    outbox = load_settings().outbox

    assert (outbox.max_attempts, outbox.poll_interval) == (3, 0.25)
    assert outbox.batch_size == OutboxSettings().batch_size


def test_a_toml_section_sets_it_too(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "rill.toml"
    config.write_text("[outbox]\nbatch_size = 7\nkeep_published = 0\n")

    outbox = load_settings(config).outbox

    assert (outbox.batch_size, outbox.keep_published) == (7, 0)


def test_a_max_backoff_below_the_backoff_is_refused_naming_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RILL_OUTBOX__BACKOFF", "10")
    monkeypatch.setenv("RILL_OUTBOX__MAX_BACKOFF", "5")

    with pytest.raises(pydantic.ValidationError) as raised:
        load_settings()

    text = str(raised.value)
    assert "max_backoff (5.0) cannot be below backoff (10.0)" in text
    assert "RILL_OUTBOX__BACKOFF" in text


@pytest.mark.parametrize(
    "field", ["poll_interval", "batch_size", "max_attempts", "backoff", "publish_timeout"]
)
def test_zero_is_refused_where_it_would_stop_the_relay(field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        OutboxSettings.model_validate({field: 0})
