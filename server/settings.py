"""The service's configuration: defaults, then a TOML config file, then ``RILL_`` environment variables.

Nested settings use ``__`` in the environment: ``RILL_ORDERS__MAX_CONCURRENT_EVENT_HANDLERS=4``.
"""

from __future__ import annotations

import os
import pathlib
import tomllib
import typing

import pydantic
import pydantic_core
import pydantic_settings

from mediator import EventDelivery
from server.brokers import check_broker_spec
from server.connect.settings import CorsSettings
from server.http.limits import HttpLimitSettings
from server.limits import LimitSettings
from server.store.settings import StoreSettings
from server.store.urls import check_database_url
from server.tls import TlsSettings
from server.tracing import TracingSettings

__all__ = ["DEMO_STORAGE", "ServiceSettings", "Settings", "load_settings"]

DEMO_STORAGE = pathlib.Path(__file__).parent / "demo_storage"


class ServiceSettings(pydantic.BaseModel):
    """Event processing of one service's mediators."""

    model_config = pydantic.ConfigDict(extra="forbid")

    max_concurrent_event_handlers: int = pydantic.Field(
        10, ge=1, le=10_000, description="event-handler runs of all the service's streams at once (ceiling)"
    )
    max_concurrent_event_handlers_per_stream: int | None = pydantic.Field(
        None,
        ge=1,
        description="runs one stream may have at once; None: half the ceiling, rounded up, so that one "
        "stream's slow or hanging handlers never hold every slot",
    )
    concurrent_event_handle_enable: bool = True
    event_delivery: EventDelivery = EventDelivery.STRICT
    event_handler_timeout: float | None = pydantic.Field(30.0, gt=0)
    drain_timeout: float = pydantic.Field(
        10.0, ge=0, description="seconds each event-handler run of a stream that ended early may go on"
    )

    @pydantic.model_validator(mode="after")
    def _share_within_ceiling(self) -> ServiceSettings:
        share = self.max_concurrent_event_handlers_per_stream
        if share is not None and share > self.max_concurrent_event_handlers:
            raise ValueError(
                f"max_concurrent_event_handlers_per_stream ({share}) cannot exceed "
                f"max_concurrent_event_handlers ({self.max_concurrent_event_handlers})"
            )
        return self

    @property
    def per_stream_share(self) -> int:
        """The per-stream bound in force: as set, else half the ceiling, rounded up."""
        share = self.max_concurrent_event_handlers_per_stream
        return share if share is not None else max(1, (self.max_concurrent_event_handlers + 1) // 2)

    def unary_options(self) -> dict[str, typing.Any]:
        """``mediator.bootstrap.bootstrap``'s event options for these settings."""
        return {
            "max_concurrent_event_handlers": self.max_concurrent_event_handlers,
            "max_concurrent_event_handlers_per_stream": self.per_stream_share,
            "concurrent_event_handle_enable": self.concurrent_event_handle_enable,
            "event_handler_timeout": self.event_handler_timeout,
            "drain_timeout": self.drain_timeout,
        }

    def streaming_options(self) -> dict[str, typing.Any]:
        """``mediator.bootstrap.bootstrap_streaming``'s event options for these settings."""
        return {**self.unary_options(), "event_delivery": self.event_delivery}


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
    drain_period: float = pydantic.Field(
        15.0,
        ge=0,
        description="seconds the server then waits for the events of delivered items; what is left "
        "after it is logged, one line per event, and counted (rill_events_abandoned_total)",
    )
    storage_root: pathlib.Path = DEMO_STORAGE
    database_url: str = pydantic.Field(
        "",
        description="the state store: a postgresql:// URL, sqlite:///path, 'memory' (no store: bounded, "
        "lost on exit) or empty: the embedded SQLite file <state_dir>/rill.db (server.store.urls)",
    )
    state_dir: pathlib.Path = pydantic.Field(
        pathlib.Path("state"),
        description="where the embedded store keeps its file (created on start; relative: to the "
        "working directory)",
    )
    store: StoreSettings = StoreSettings()
    log_level: typing.Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    broker: str = pydantic.Field(
        "memory", description="where notifications go: devnull, memory or an amqp:// URL (server.brokers)"
    )
    orders: ServiceSettings = ServiceSettings()
    files: ServiceSettings = ServiceSettings()
    services: dict[str, ServiceSettings] = pydantic.Field(
        default_factory=dict,
        description="event settings of any service by name ([services.reports] in TOML, "
        "RILL_SERVICES__REPORTS__... in the environment); see Settings.service()",
    )
    tls: TlsSettings = TlsSettings()
    auth_token: pydantic.SecretStr | None = pydantic.Field(
        None, description="set: every call needs 'authorization: Bearer <token>' (server.auth)"
    )
    reflection: bool = pydantic.Field(True, description="serve gRPC server reflection")
    limits: LimitSettings = LimitSettings()
    cors: CorsSettings = CorsSettings()  # browser origins allowed on the HTTP edge (server.connect)
    http_limits: HttpLimitSettings = HttpLimitSettings()
    metrics: bool = pydantic.Field(True, description="collect Prometheus metrics (server.metrics)")
    metrics_address: str = pydantic.Field(
        "", description="HOST:PORT serving /metrics on its own; empty: /metrics on the HTTP edge only"
    )
    tracing: TracingSettings = TracingSettings()
    log_format: typing.Literal["auto", "json", "text"] = pydantic.Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise"
    )

    def service(self, name: str) -> ServiceSettings:
        """The event settings of the service called ``name``: ``services.<name>`` if set; for the demo's
        ``orders`` and ``files`` the top-level sections otherwise; else the defaults."""
        found = self.services.get(name)
        if found is not None:
            return found
        if name in ("orders", "files"):
            return typing.cast(ServiceSettings, getattr(self, name))
        return ServiceSettings()

    @pydantic.field_validator("address", "http_address", "metrics_address")
    @classmethod
    def _host_and_port(cls, address: str, info: pydantic.ValidationInfo) -> str:
        if not address and info.field_name in ("http_address", "metrics_address"):
            return address
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {address!r}")
        return address

    @pydantic.field_validator("database_url")
    @classmethod
    def _known_database(cls, database_url: str) -> str:
        return check_database_url(database_url)

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

    try:
        return Settings.model_validate(_FromFile(**overrides).model_dump())
    except pydantic.ValidationError as error:
        raise _with_sources(error, config_file, overrides) from None


def _with_sources(
    error: pydantic.ValidationError, config_file: pathlib.Path | None, overrides: dict[str, typing.Any]
) -> pydantic.ValidationError:
    """The same errors, each naming where its value came from (not the private class's name)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    delimiter = str(Settings.model_config.get("env_nested_delimiter", "__"))
    environment = {name.upper() for name in os.environ}
    in_file: dict[str, typing.Any] = {}
    if config_file is not None:
        with config_file.open("rb") as file:
            in_file = tomllib.load(file)

    def source(loc: tuple[int | str, ...]) -> str:
        path = [str(part) for part in loc]
        if path and path[0] in overrides:
            return "the command line"
        for length in range(len(path), 0, -1):  # RILL_TLS__CERT_FILE, or RILL_TLS holding JSON
            name = (prefix + delimiter.join(path[:length])).upper()
            nested = sorted(variable for variable in environment if variable.startswith(name + delimiter))
            if name in environment or nested:
                return f"the environment: {', '.join([name] if name in environment else nested)}"
        table: typing.Any = in_file
        for part in path:
            if not isinstance(table, dict) or part not in table:
                return "the defaults"
            table = table[part]
        return f"{config_file}"

    details: list[pydantic_core.InitErrorDetails] = []
    for line in error.errors():
        loc = tuple(line["loc"])
        message = f"{line['msg']} (from {source(loc)})"
        detail: pydantic_core.InitErrorDetails = {
            # The message as a context value: braces in it are not a template.
            "type": pydantic_core.PydanticCustomError(line["type"], "{message}", {"message": message}),
            "loc": loc,
            "input": line.get("input"),
        }
        details.append(detail)
    return pydantic.ValidationError.from_exception_data("rill settings", details, hide_input=True)
