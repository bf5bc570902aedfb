"""The service's configuration: defaults, then a TOML config file, then ``RILL_`` environment variables.

Nested settings use ``__`` in the environment: ``RILL_ORDERS__MAX_CONCURRENT_EVENT_HANDLERS=4``.
"""

from __future__ import annotations

import pathlib
import typing

import pydantic
import pydantic_settings

from mediator import EventDelivery
from server.brokers import check_broker_spec
from server.http.limits import HttpLimitSettings
from server.limits import LimitSettings
from server.tls import TlsSettings
from server.tracing import TracingSettings

__all__ = ["DEMO_STORAGE", "ServiceSettings", "Settings", "load_settings"]

DEMO_STORAGE = pathlib.Path(__file__).parent / "demo_storage"


class ServiceSettings(pydantic.BaseModel):
    """Event processing of one service's mediators."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_concurrent_event_handlers: int = pydantic.Field(10, ge=1, le=10_000)
    concurrent_event_handle_enable: bool = True
    event_delivery: EventDelivery = EventDelivery.STRICT
    event_handler_timeout: float | None = pydantic.Field(30.0, gt=0)
    drain_timeout: float = pydantic.Field(10.0, ge=0)


class Settings(pydantic_settings.BaseSettings):
    """Everything ``python -m server`` can be told."""

    model_config = pydantic_settings.SettingsConfigDict(
        env_prefix="RILL_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,  # a broker URL holds a password
    )

    address: str = "127.0.0.1:50051"
    http_address: str = pydantic.Field(
        "127.0.0.1:8080", description="HOST:PORT of the HTTP/SSE edge; empty: off"
    )
    sse_ping_seconds: float = pydantic.Field(
        15.0, gt=0, description="keep-alive comment interval of SSE streams"
    )
    grace_period: float = pydantic.Field(10.0, ge=0, description="seconds in-flight calls get on shutdown")
    storage_root: pathlib.Path = DEMO_STORAGE
    log_level: typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    broker: str = pydantic.Field(
        "memory", description="where notifications go: devnull, memory or an amqp:// URL (server.brokers)"
    )
    orders: ServiceSettings = ServiceSettings()
    files: ServiceSettings = ServiceSettings()
    tls: TlsSettings = TlsSettings()
    auth_token: pydantic.SecretStr | None = pydantic.Field(
        None, description="set: every call needs 'authorization: Bearer <token>' (server.auth)"
    )
    reflection: bool = pydantic.Field(True, description="serve gRPC server reflection")
    limits: LimitSettings = LimitSettings()
    http_limits: HttpLimitSettings = HttpLimitSettings()
    metrics: bool = pydantic.Field(True, description="collect Prometheus metrics (server.metrics)")
    metrics_address: str = pydantic.Field(
        "", description="HOST:PORT serving /metrics on its own; empty: /metrics on the HTTP edge only"
    )
    tracing: TracingSettings = TracingSettings()
    log_format: typing.Literal["auto", "json", "text"] = pydantic.Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise"
    )

    @pydantic.field_validator("address", "http_address", "metrics_address")
    @classmethod
    def _host_and_port(cls, address: str, info: pydantic.ValidationInfo) -> str:
        if not address and info.field_name in ("http_address", "metrics_address"):
            return address
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {address!r}")
        return address

    @pydantic.field_validator("broker")
    @classmethod
    def _known_broker(cls, broker: str) -> str:
        return check_broker_spec(broker)


def load_settings(config_file: pathlib.Path | None = None, **overrides: typing.Any) -> Settings:
    """Settings from ``config_file`` (TOML), the environment and ``overrides``, in rising priority."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[pydantic_settings.BaseSettings],
            init_settings: pydantic_settings.PydanticBaseSettingsSource,
            env_settings: pydantic_settings.PydanticBaseSettingsSource,
            dotenv_settings: pydantic_settings.PydanticBaseSettingsSource,
            file_secret_settings: pydantic_settings.PydanticBaseSettingsSource,
        ) -> tuple[pydantic_settings.PydanticBaseSettingsSource, ...]:
            sources: tuple[pydantic_settings.PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if config_file is not None:
                sources += (pydantic_settings.TomlConfigSettingsSource(settings_cls, toml_file=config_file),)
            return sources

    return Settings.model_validate(_FromFile(**overrides).model_dump())
