"""Assemble the service: mediators per service, bindings, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import typing

import grpc
from dependency_injector import containers, providers
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import make_asgi_app

import mediator
from mediator import bootstrap
from mediator.message_brokers.memory import InMemoryMessageBroker
from mediator.message_brokers.protocol import MessageBroker
from mediator.observe import MediatorObserver
from protos.files.v1 import files_pb2
from protos.orders.v1 import orders_pb2
from server.auth import BearerTokenInterceptor, BearerTokenMiddleware
from server.binding import Rpc, ServiceBinding
from server.brokers import StartableBroker, broker_from_url
from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from server.metrics import Metrics
from server.services import files, orders
from server.settings import ServiceSettings, Settings
from server.tracing import Tracing

__all__ = ["RillServer", "create_server"]

logger = logging.getLogger("server")

OVERALL = ""  # the health service's name for the server as a whole


class Handlers(containers.DeclarativeContainer):
    """How every handler of the service is built; shared state lives in singletons."""

    config = providers.Configuration()
    order_book = providers.Singleton(orders.OrderBook)
    order_analytics = providers.Singleton(orders.OrderAnalytics)
    file_storage = providers.Singleton(files.FileStorage, root=config.storage_root)
    file_ledger = providers.Singleton(files.FileLedger)

    process_orders = providers.Factory(orders.ProcessOrdersCommandHandler)
    get_order = providers.Factory(orders.GetOrderQueryHandler, book=order_book)
    order_processed = providers.Factory(orders.OrderProcessedEventHandler, book=order_book)
    order_analytics_handler = providers.Factory(orders.OrderAnalyticsEventHandler, analytics=order_analytics)
    process_files = providers.Factory(files.ProcessFilesCommandHandler, storage=file_storage)
    file_processed = providers.Factory(files.FileProcessedEventHandler, ledger=file_ledger)


def _mediator_options(
    service: ServiceSettings,
    container: Handlers,
    broker: MessageBroker,
    commands_mapper: typing.Callable[[mediator.RequestMap], None],
    domain_events_mapper: typing.Callable[[mediator.EventMap], None],
) -> dict[str, typing.Any]:
    """What a service's mediators are built with (``mediator.bootstrap``'s arguments)."""
    return {
        "di_container": container,
        "commands_mapper": commands_mapper,
        "domain_events_mapper": domain_events_mapper,
        "message_broker": broker,
        "max_concurrent_event_handlers": service.max_concurrent_event_handlers,
        "concurrent_event_handle_enable": service.concurrent_event_handle_enable,
        "event_handler_timeout": service.event_handler_timeout,
        "drain_timeout": service.drain_timeout,
    }


def _streaming_mediator(
    service: ServiceSettings, options: dict[str, typing.Any], observer: MediatorObserver | None
) -> mediator.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(**options, event_delivery=service.event_delivery, observer=observer)


class RillServer:
    """Both services over gRPC, and over HTTP/SSE when ``http_address`` is set. ``async with`` runs it."""

    def __init__(
        self, settings: Settings, *, broker: MessageBroker | None = None, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.broker: MessageBroker = broker if broker is not None else InMemoryMessageBroker()
        self.handlers = Handlers()
        self.handlers.config.storage_root.from_value(settings.storage_root)
        self.handlers.file_storage()  # fail at start-up, not on the first call, if the root is wrong
        self.metrics = Metrics() if settings.metrics else None
        self.tracing = tracing if tracing is not None else Tracing.from_settings(settings.tracing)
        self.calls = CallRegistry(metrics=self.metrics, tracing=self.tracing)

        orders_options = _mediator_options(
            settings.orders, self.handlers, self.broker, orders.commands_mapper, orders.domain_events_mapper
        )
        orders_streaming = _streaming_mediator(settings.orders, orders_options, self._observer("orders"))
        orders_unary = bootstrap.bootstrap(**orders_options, observer=self._observer("orders.unary"))
        files_options = _mediator_options(
            settings.files, self.handlers, self.broker, files.commands_mapper, files.domain_events_mapper
        )
        # FileService has no unary RPC: it gets no RequestMediator.
        files_streaming = _streaming_mediator(settings.files, files_options, self._observer("files"))
        self.mediators = {"orders": orders_streaming, "files": files_streaming}
        if self.metrics is not None:
            self.metrics.attach({**self.mediators, "orders.unary": orders_unary})
        self.bindings = [
            ServiceBinding(
                orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
                streaming=orders_streaming,
                unary=orders_unary,
                rpcs=[
                    Rpc("ProcessOrders", orders.ProcessOrdersCommand, orders.OrderProcessedResult),
                    Rpc("GetOrder", orders.GetOrderQuery, orders.OrderView),
                ],
            ),
            ServiceBinding(
                files_pb2.DESCRIPTOR.services_by_name["FileService"],
                streaming=files_streaming,
                rpcs=[Rpc("ProcessFiles", files.ProcessFilesCommand, files.FileProcessedResult)],
            ),
        ]

        # grpc-stubs 1.53 predates grpc_health's asyncio servicer.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        token = settings.auth_token.get_secret_value() if settings.auth_token is not None else ""
        self._server = grpc.aio.server(
            options=settings.limits.grpc_options(),
            interceptors=[BearerTokenInterceptor(token)] if token else None,
            maximum_concurrent_rpcs=settings.limits.max_concurrent_rpcs,
        )
        for binding in self.bindings:
            handlers = binding.method_handlers(self.calls, stall_timeout=settings.limits.stall_timeout)
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(binding.name, handlers),)
            )
            # Registered methods skip grpc's per-call generic lookup; grpc-stubs 1.53 predates them.
            self._server.add_registered_method_handlers(binding.name, handlers)  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        service_names = [binding.name for binding in self.bindings]
        if settings.reflection:
            reflection.enable_server_reflection(
                (
                    *service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                self._server,
            )
        if settings.tls.enabled:
            self.port = self._server.add_secure_port(settings.address, settings.tls.server_credentials())
        else:
            self.port = self._server.add_insecure_port(settings.address)
        if self.port == 0:
            raise OSError(f"could not bind {settings.address}")
        host = settings.address.rpartition(":")[0]
        self.address = f"{host}:{self.port}"
        self.http: HttpServer | None = None
        if settings.http_address:
            app: typing.Any = create_http_app(
                self.bindings,
                self.calls,
                ping_seconds=settings.sse_ping_seconds,
                stall_timeout=settings.limits.stall_timeout,
                max_body_bytes=settings.limits.max_receive_message_bytes,
                metrics=self.metrics.registry if self.metrics is not None else None,
            )
            if token:
                app = BearerTokenMiddleware(app, token)
            self.http = HttpServer(
                app, settings.http_address, limits=settings.http_limits, **settings.tls.uvicorn_options()
            )
        self.metrics_http: HttpServer | None = None
        if settings.metrics_address and self.metrics is not None:
            # The same TLS, token and connection limits as the edge: a scrape is a client like any other.
            scrape: typing.Any = make_asgi_app(self.metrics.registry)
            if token:
                scrape = BearerTokenMiddleware(scrape, token, open_paths=())
            self.metrics_http = HttpServer(
                scrape,
                settings.metrics_address,
                limits=settings.http_limits,
                name="metrics",
                **settings.tls.uvicorn_options(),
            )
        self._started = False
        self._stopped = False

    def _observer(self, name: str) -> MediatorObserver | None:
        """What watches the mediator called ``name``: metrics, traces, both, or nothing."""
        metrics = self.metrics.mediator(name, type(self.broker).__qualname__) if self.metrics else None
        return self.tracing.observer(metrics) if self.tracing is not None else metrics

    async def start(self) -> None:
        if self._stopped:
            raise RuntimeError("a stopped server cannot be started again; create a new one")
        if isinstance(self.broker, StartableBroker):
            await self.broker.start()  # an unreachable broker fails the start-up, before serving
        await self._server.start()
        if self.http is not None:
            await self.http.start()
        if self.metrics_http is not None:
            await self.metrics_http.start()
        self._started = True
        for binding in self.bindings:
            await self.health.set(binding.name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(OVERALL, health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving %s on %s", ", ".join(b.name for b in self.bindings), self.address)
        for name, streaming in self.mediators.items():
            service = getattr(self.settings, name)
            logger.info(
                "%s: max_concurrent_event_handlers=%d concurrent=%s delivery=%s handler_timeout=%s drain=%gs",
                name,
                streaming.max_concurrent_event_handlers,
                service.concurrent_event_handle_enable,
                streaming.event_delivery.value,
                service.event_handler_timeout,
                service.drain_timeout,
            )

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, give in-flight calls ``grace`` s, then end them.

        Cancelled streams still drain the events of their delivered items (the mediators'
        ``drain_timeout``) before this returns.
        """
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.grace_period if grace is None else grace
        await self.health.enter_graceful_shutdown()
        logger.info("stopping: %d calls in flight, %g s grace", self.calls.active, grace)
        stopping = [self._server.stop(grace)]
        if self.http is not None:
            stopping.append(self.http.stop(grace))
        if self.metrics_http is not None:
            stopping.append(self.metrics_http.stop(1.0))  # a scrape in progress may finish
        await asyncio.gather(*stopping)
        drain = max(getattr(self.settings, name).drain_timeout for name in self.mediators) + 1.0
        if not await self.calls.wait_idle(drain):
            logger.error(
                "%d calls were still finishing %g s after the grace period", self.calls.active, drain
            )
        await self.broker.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # exports the spans still buffered
        logger.info("stopped")

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def __aenter__(self) -> RillServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def create_server(
    settings: Settings | None = None, *, broker: MessageBroker | None = None, tracing: Tracing | None = None
) -> RillServer:
    """Build the server from explicit settings (``Settings()`` holds the embedded defaults).

    The message broker is ``broker`` if given, else the one ``settings.broker`` names; the tracer is
    ``tracing`` if given (tests pass one with an in-memory exporter), else ``settings.tracing``'s.
    """
    settings = settings if settings is not None else Settings()
    return RillServer(
        settings, broker=broker if broker is not None else broker_from_url(settings.broker), tracing=tracing
    )
