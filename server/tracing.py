"""OpenTelemetry traces: a server span per RPC, a child span per event-handler run.

The RPC span is started where calls are tracked (:mod:`server.calls`, for both transports), from
the caller's W3C ``traceparent`` (gRPC metadata or HTTP header), so that it exists before any status
is sent (``abort()`` sends it before an interceptor would see it). It follows OpenTelemetry's RPC
conventions: named ``orders.v1.OrderService/ProcessOrders``, kind SERVER, ``rpc.system``,
``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``, status ERROR for the server-side error
codes. Each event-handler run gets an INTERNAL span, a child of the RPC span (the mediator starts
the run in the stream's context), named after the handler, with the event type and
``rill.item.index``: the index of the streamed item that emitted the event (the ``n``-th message
of the RPC span). A handler that raised or timed out records the exception and an ERROR status.

Each server has its own ``TracerProvider`` (the process-global one is left alone); the exporter
(none, console, OTLP over gRPC) and the sampling ratio come from :class:`TracingSettings`.
"""

from __future__ import annotations

import typing

import grpc
import pydantic
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mediator import Event, Request
from mediator.observe import NULL_SCOPE, MediatorObserver, NullObserver, Outcome

__all__ = ["Tracing", "TracingObserver", "TracingSettings", "trace_id_of"]


class TracingSettings(pydantic.BaseModel):
    """``RILL_TRACING__EXPORTER=console``, ``RILL_TRACING__SAMPLE_RATIO=0.1``, ..."""

    model_config = pydantic.ConfigDict(extra="forbid")

    exporter: typing.Literal["none", "console", "otlp"] = pydantic.Field(
        "none", description="where spans go: nowhere (tracing off), stdout, or an OTLP/gRPC collector"
    )
    otlp_endpoint: str = pydantic.Field("http://127.0.0.1:4317", description="the OTLP collector (gRPC)")
    otlp_insecure: bool = pydantic.Field(True, description="plaintext to the collector")
    sample_ratio: float = pydantic.Field(
        1.0, ge=0, le=1, description="share of new traces recorded (a caller's sampled flag wins)"
    )
    service_name: str = "rill"


_PROPAGATOR = TraceContextTextMapPropagator()

# OpenTelemetry's RPC conventions: these codes make a server span an error; the rest are the caller's.
_SERVER_ERRORS = frozenset(
    code.name
    for code in (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
)


def trace_id_of(span: trace.Span | None) -> str:
    """The span's trace id in hex, or '' when there is no (valid) span."""
    if span is None:
        return ""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class Tracing:
    """A server's tracer: its own provider, the span per RPC, and the mediators' observers."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("rill.server")

    @classmethod
    def from_settings(cls, settings: TracingSettings) -> Tracing | None:
        """None when the exporter is ``none`` (tracing off)."""
        if settings.exporter == "none":
            return None
        exporter: SpanExporter
        if settings.exporter == "console":
            exporter = ConsoleSpanExporter()
        else:
            # Imported here: only a server exporting over OTLP pays for the exporter's import.
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as error:
                raise ImportError(
                    "the OTLP exporter needs the otlp extra: pip install 'rill[otlp]'"
                ) from error

            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure)
        return cls.with_processor(BatchSpanProcessor(exporter), settings.sample_ratio, settings.service_name)

    @classmethod
    def with_processor(
        cls, processor: SpanProcessor, sample_ratio: float = 1.0, service_name: str = "rill"
    ) -> Tracing:
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
            resource=Resource.create({"service.name": service_name}),
        )
        provider.add_span_processor(processor)
        return cls(provider)

    def server_span(
        self, method: str, carrier: typing.Mapping[str, str], transport: str, request_id: str
    ) -> trace.Span:
        """The span of one RPC (``method`` is ``/package.Service/Method``), continued from ``carrier``."""
        service, _, name = method.lstrip("/").partition("/")
        return self.tracer.start_span(
            f"{service}/{name}" if name else method,
            context=_PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": name,
                "rill.transport": transport,
                "rill.request_id": request_id,
            },
        )

    @staticmethod
    def end(span: trace.Span, code: grpc.StatusCode, items: int, error: BaseException | None) -> None:
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_attribute("rill.items", items)
        if error is not None:
            span.record_exception(error)
        if code.name in _SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()

    def observer(self, inner: MediatorObserver | None) -> TracingObserver:
        return TracingObserver(self.tracer, inner if inner is not None else NullObserver())

    def shutdown(self) -> None:
        """Export what is still buffered and stop the exporter."""
        self.provider.shutdown()


class TracingObserver(NullObserver):
    """Opens a span around each event-handler run; every other hook goes to ``inner`` (metrics)."""

    def __init__(self, tracer: trace.Tracer, inner: MediatorObserver) -> None:
        self.tracer = tracer
        self.inner = inner

    def item_yielded(self, request_type: type[Request]) -> None:
        self.inner.item_yielded(request_type)

    def events_emitted(self, events: typing.Sequence[Event]) -> None:
        self.inner.events_emitted(events)

    def strict_waited(self, request_type: type[Request], seconds: float) -> None:
        self.inner.strict_waited(request_type, seconds)

    def event_handler_scope(
        self, event: Event, handler: str, item: int | None
    ) -> typing.ContextManager[object]:
        if not trace.get_current_span().is_recording():
            # The RPC was not sampled, so no child of it would be (ParentBased): skip the span
            # entirely rather than build a non-recording one (~10 µs per run).
            return NULL_SCOPE
        attributes: dict[str, str | int] = {
            "rill.event.type": type(event).__name__,
            "rill.event_handler": handler,
        }
        if item is not None:
            attributes["rill.item.index"] = item
        return self.tracer.start_as_current_span(handler, kind=SpanKind.INTERNAL, attributes=attributes)

    def event_handler_ended(
        self, event: Event, handler: str, outcome: Outcome, seconds: float, error: BaseException | None
    ) -> None:
        self.inner.event_handler_ended(event, handler, outcome, seconds, error)
