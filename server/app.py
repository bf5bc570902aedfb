"""Serve service bindings: health, reflection, metrics, traces, auth, TLS, limits, graceful stop.

``create_server(settings, services=[...])`` serves any team's bindings; without ``services`` it serves
the demo application (:mod:`server.demo`).
"""

from __future__ import annotations

import asyncio
import logging
import typing

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import make_asgi_app

import mediator
from mediator.message_brokers.protocol import MessageBroker, broker_name
from mediator.message_brokers.retrying import RetryingMessageBroker
from mediator.observe import MediatorObserver
from server.admission import AdmissionInterceptor
from server.aio_wakeups import drain_wakeups
from server.apps import App, Resource, Services, checked_app
from server.auth import BearerTokenInterceptor, BearerTokenMiddleware
from server.binding import ServiceBinding
from server.brokers import StartableBroker
from server.calls import CallRegistry
from server.connect import connect_edge
from server.demo import DemoApp
from server.health import HealthServicer
from server.http import HttpServer, create_http_app
from server.logs import quiet_grpc_decode_errors
from server.metrics import Metrics
from server.settings import Settings
from server.tracing import Tracing

__all__ = ["RillServer", "create_server"]

logger = logging.getLogger("server")

OVERALL = ""  # the health service's name for the server as a whole


Mediator: typing.TypeAlias = "mediator.StreamingRequestMediator | mediator.RequestMediator"


class RillServer:
    """The given services over gRPC, and over HTTP/SSE when ``http_address`` is set.

    Every binding gets what the demo gets: health (per service and overall), reflection, metrics and
    traces of its calls and of its mediators' event handlers (an observer is given to every mediator
    that has none of its own), logs, auth, TLS, limits and the shutdown drain. The application's
    ``resources`` (a store, a relay: :class:`server.apps.App`) are started first, in order, then the
    mediators' message brokers, before serving; after the drain the brokers are closed, then the
    resources, in reverse order. ``async with`` runs it.
    """

    def __init__(
        self,
        settings: Settings,
        services: typing.Sequence[ServiceBinding],
        *,
        tracing: Tracing | None = None,
        handlers: typing.Any = None,
        reuse_port: bool = False,
        resources: typing.Sequence[Resource] = (),
    ) -> None:
        if not services:
            raise ValueError("a server needs at least one service binding")
        names = [binding.name for binding in services]
        if len(set(names)) != len(names):
            raise ValueError(f"a service is bound twice: {', '.join(names)}")
        self.settings = settings
        self.bindings = list(services)
        self.resources = list(resources)
        """What the application owns (:class:`server.apps.App`): started before serving, closed last."""
        self.handlers = handlers
        """The demo's handler container (None for other applications): what its handlers recorded."""
        self.metrics = Metrics() if settings.metrics else None
        self.tracing = tracing if tracing is not None else Tracing.from_settings(settings.tracing)
        self.calls = CallRegistry(metrics=self.metrics, tracing=self.tracing)
        self.mediators: dict[str, mediator.StreamingRequestMediator] = {}
        self.unary_mediators: dict[str, mediator.RequestMediator] = {}
        for binding in self.bindings:
            if binding.streaming is not None:
                self.mediators[binding.settings_name] = binding.streaming
            if binding.unary is not None:
                self.unary_mediators[binding.settings_name] = binding.unary
        self.brokers: list[MessageBroker] = list(
            {id(each.message_broker): each.message_broker for each in self._all_mediators()}.values()
        )
        for name, streaming in self.mediators.items():
            if streaming.observer is None:
                streaming.observer = self._observer(name, streaming)
        for name, unary in self.unary_mediators.items():
            if unary.observer is None:
                unary.observer = self._observer(f"{name}.unary", unary)
        if self.metrics is not None:
            self.metrics.attach(
                {**self.mediators, **{f"{name}.unary": each for name, each in self.unary_mediators.items()}}
            )
            retrying = [each for each in self.brokers if isinstance(each, RetryingMessageBroker)]
            self.metrics.retrying = retrying[0] if retrying else None
            for resource in self.resources:
                # A resource with series of its own (the outbox relay) reports on the server's registry.
                register = getattr(resource, "register_metrics", None)
                if callable(register):
                    register(self.metrics.registry)

        self.health = HealthServicer()
        token = settings.auth_token.get_secret_value() if settings.auth_token is not None else ""
        quiet_grpc_decode_errors()
        limits = settings.limits
        self.admission = AdmissionInterceptor(
            max_in_flight=limits.max_concurrent_rpcs, request_timeout=limits.request_timeout
        )
        interceptors: list[typing.Any] = [self.admission]  # first: it bounds what the others return
        if token:
            interceptors.append(BearerTokenInterceptor(token))
        self._server = grpc.aio.server(
            options=limits.grpc_options(reuse_port=reuse_port), interceptors=interceptors
        )
        for binding in self.bindings:
            handlers = binding.method_handlers(self.calls, stall_timeout=settings.limits.stall_timeout)
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(binding.name, handlers),)
            )
            # Registered methods skip grpc's per-call generic lookup.
            self._server.add_registered_method_handlers(binding.name, handlers)
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
        try:
            if settings.tls.enabled:
                self.port = self._server.add_secure_port(settings.address, settings.tls.server_credentials())
            else:
                self.port = self._server.add_insecure_port(settings.address)
        except RuntimeError:  # grpc's "Failed to bind to address …"
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.address}: the address is in use or not available")
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
                metrics=self.metrics.scrape_registry if self.metrics is not None else None,
            )
            if token:
                app = BearerTokenMiddleware(app, token)
            # Connect and gRPC-Web at the RPCs' gRPC paths (server.connect), CORS for browsers.
            app = connect_edge(
                app, self.bindings, self.calls, token=token, limits=settings.limits, cors=settings.cors
            )
            self.http = HttpServer(
                app,
                settings.http_address,
                limits=settings.http_limits,
                reuse_port=reuse_port,
                **settings.tls.uvicorn_options(),
            )
        self.metrics_http: HttpServer | None = None
        if settings.metrics_address and self.metrics is not None:
            # The same TLS, token and connection limits as the edge: a scrape is a client like any other.
            scrape: typing.Any = make_asgi_app(self.metrics.scrape_registry)
            if token:
                scrape = BearerTokenMiddleware(scrape, token, open_paths=())
            self.metrics_http = HttpServer(
                scrape,
                settings.metrics_address,
                limits=settings.http_limits,
                name="metrics",
                reuse_port=reuse_port,
                **settings.tls.uvicorn_options(),
            )
        self._started = False
        self._stopped = False

    @property
    def broker(self) -> MessageBroker:
        """The message broker of the server's mediators (the first one, if they have several)."""
        return self.brokers[0]

    def _all_mediators(self) -> list[Mediator]:
        return [*self.mediators.values(), *self.unary_mediators.values()]

    def _observer(self, name: str, watched: Mediator) -> MediatorObserver | None:
        """What watches the mediator called ``name``: metrics, traces, both, or nothing."""
        broker = broker_name(watched.message_broker)
        metrics = self.metrics.mediator(name, broker) if self.metrics else None
        return self.tracing.observer(metrics) if self.tracing is not None else metrics

    async def start(self) -> None:
        if self._stopped:
            raise RuntimeError("a stopped server cannot be started again; create a new one")
        started: list[Resource] = []
        try:
            for resource in self.resources:
                await resource.start()  # a store migrates here; one that cannot fails the start-up
                started.append(resource)
            for broker in self.brokers:
                if isinstance(broker, StartableBroker):
                    await broker.start()  # an unreachable broker fails the start-up, before serving
        except BaseException:
            await self._close_resources(started)
            raise
        await self._server.start()
        drain_wakeups()  # grpc's completions keep their pace when the loop is busy (server.aio_wakeups)
        if self.metrics is not None:
            self.metrics.start()
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
            logger.info(
                "%s: max_concurrent_event_handlers=%d per_stream=%d delivery=%s handler_timeout=%s drain=%gs",
                name,
                streaming.max_concurrent_event_handlers,
                streaming.max_concurrent_event_handlers_per_stream,
                streaming.event_delivery.value,
                streaming.event_handler_timeout,
                streaming.drain_timeout,
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
        # Every stream has stopped producing now (ended, or cancelled by the stops above): what is
        # left is the events of what they delivered, each run bounded by its drain_timeout.
        await self._drain(self.settings.drain_period)
        for broker in self.brokers:
            await broker.aclose()
        # Last: the drained event handlers, and the brokers' last sends, may have used them.
        await self._close_resources(self.resources)
        if self.metrics is not None:
            await self.metrics.stop()  # with --workers: this worker's last counts stay in the sum
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # exports the spans still buffered
        logger.info("stopped")

    async def _close_resources(self, resources: typing.Sequence[Resource]) -> None:
        """Close ``resources`` in reverse order; one that fails to close does not keep the rest open."""
        for resource in reversed(resources):
            try:
                await resource.aclose()
            except Exception:
                logger.exception("closing %s failed", type(resource).__qualname__)

    async def _drain(self, seconds: float) -> None:
        """Wait ``seconds`` for the calls still finishing their events, then give up what is left:
        each event-handler run left is logged with its event and the call's request id, and counted."""
        if await self.calls.wait_idle(seconds):
            return
        reason = f"the server is shutting down ({seconds:g} s drain period ran out)"
        drains = sum(each.abandon_drains(reason) for each in self._all_mediators())
        logger.error(
            "%d calls were still finishing %g s after the grace period; gave up %d drains",
            self.calls.active,
            seconds,
            drains,
        )
        if not await self.calls.wait_idle(5.0):
            logger.error("%d calls did not end after their drains were given up", self.calls.active)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def __aenter__(self) -> RillServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def create_server(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    broker: MessageBroker | None = None,
    tracing: Tracing | None = None,
    reuse_port: bool = False,
) -> RillServer:
    """Build a server from explicit settings (``Settings()`` holds the embedded defaults).

    ``services``: the bindings to serve (or an :class:`~server.apps.App`: bindings and resources), or
    a callable that takes the settings and returns them;
    without it, the demo (:mod:`server.demo`), whose notifications go to ``broker`` if given, else to
    the one ``settings.broker`` names (another application gives its mediators their own broker).
    ``tracing``: the tracer if given (tests pass one with an in-memory exporter), else
    ``settings.tracing``'s. ``reuse_port``: share the port with other processes (``python -m server
    --workers``); otherwise a port already in use fails the start-up.
    """
    settings = settings if settings is not None else Settings()
    if services is None:
        demo = DemoApp(settings, broker)
        return RillServer(
            settings,
            demo.bindings,
            tracing=tracing,
            handlers=demo.handlers,
            reuse_port=reuse_port,
            resources=demo.resources,
        )
    if broker is not None:
        raise TypeError("broker= is the demo's: give your own mediators their message_broker")
    built: object = services(settings) if callable(services) else services
    app: App = checked_app(built, "services")
    return RillServer(settings, app.bindings, tracing=tracing, reuse_port=reuse_port, resources=app.resources)
