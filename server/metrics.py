"""Prometheus metrics of the service: RPCs (the grpc-ecosystem names), mediators, broker.

The RPC series follow go-grpc-prometheus / py-grpc-prometheus (``grpc_server_started_total``,
``grpc_server_handled_total{grpc_code}``, ``grpc_server_msg_received_total``,
``grpc_server_msg_sent_total``, ``grpc_server_handling_seconds``, labelled ``grpc_type``,
``grpc_service``, ``grpc_method``), with one more label, ``transport`` (``grpc`` or ``http``: the
HTTP/SSE edge serves the same RPCs). The rest are rill's own (``rill_*``); docs/operations.md lists
every series with its meaning.

Counting happens on the hot path of every item and every event-handler run, so it is plain Python
arithmetic on ints and floats kept here (one event loop owns them); ``prometheus_client`` reads them
at scrape time through a custom collector registered on the server's own ``CollectorRegistry``
(never the process-global one: several servers in one process keep separate series). A
``prometheus_client.Counter.inc`` takes a lock and costs ~10x a dict increment. With ``--workers`` the
same series are copied into prometheus_client's multiprocess files and every scrape reports the sum
over workers (:mod:`server.metrics_workers`).
"""

from __future__ import annotations

import bisect
import collections
import logging
import typing

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mediator import Event, Request, RequestMediator, StreamingRequestMediator
from mediator.message_brokers.retrying import RetryingMessageBroker
from mediator.observe import NullObserver, Outcome
from server.metrics_workers import WorkerSeries, multiprocess_dir

__all__ = ["CallSeries", "MediatorMetrics", "Metrics", "RpcLabels"]

# go-grpc-prometheus's default buckets, stretched for long streams.
logger = logging.getLogger("server.events")

OUTCOMES: tuple[Outcome, ...] = typing.get_args(Outcome)

HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FIRST_MESSAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EVENT_HANDLER_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30)
WAIT_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60)


class Histogram:
    """One histogram series: bucket counts (the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return cumulative


class RpcLabels(typing.NamedTuple):
    """The labels of one RPC's series."""

    grpc_type: str  # unary | server_stream
    grpc_service: str
    grpc_method: str
    transport: str  # grpc | http


class CallSeries:
    """Every series of one RPC on one transport (a :class:`server.calls.Call` holds its own)."""

    __slots__ = ("first_message", "handled", "handling", "in_flight", "labels", "sent", "started", "wait")

    def __init__(self, labels: RpcLabels) -> None:
        self.labels = labels
        self.started = 0
        self.in_flight = 0
        self.sent = 0
        self.handled: collections.Counter[str] = collections.Counter()
        self.handling = Histogram(HANDLING_BUCKETS)
        self.first_message = Histogram(FIRST_MESSAGE_BUCKETS)
        self.wait = Histogram(WAIT_BUCKETS)


class HandlerStats:
    """The runs of one event handler: counts by outcome, and their durations."""

    __slots__ = ("outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.seconds = Histogram(EVENT_HANDLER_BUCKETS)


class MediatorMetrics(NullObserver):
    """The observer of one mediator (``mediator`` label): items, events, event-handler runs."""

    def __init__(self, name: str, broker: str) -> None:
        self.name = name
        self.broker = broker  # the broker's target name: its runs are notifications
        self.items: dict[type[Request], int] = {}
        self.events: dict[type[Event], int] = {}
        self.handlers: dict[str, HandlerStats] = {}
        self.strict_wait: dict[type[Request], Histogram] = {}
        self.mediator: StreamingRequestMediator | RequestMediator | None = None

    def item_yielded(self, request_type: type[Request]) -> None:
        items = self.items
        items[request_type] = items.get(request_type, 0) + 1

    def events_emitted(self, events: typing.Sequence[Event]) -> None:
        counts = self.events
        for event in events:
            kind = type(event)
            counts[kind] = counts.get(kind, 0) + 1

    def strict_waited(self, request_type: type[Request], seconds: float) -> None:
        histogram = self.strict_wait.get(request_type)
        if histogram is None:
            histogram = self.strict_wait[request_type] = Histogram(WAIT_BUCKETS)
        histogram.observe(seconds)

    def event_handler_ended(
        self, event: Event, handler: str, outcome: Outcome, seconds: float, error: BaseException | None
    ) -> None:
        stats = self.handlers.get(handler)
        if stats is None:
            stats = self.handlers[handler] = HandlerStats()
        stats.outcomes[outcome] += 1
        stats.seconds.observe(seconds)
        if error is not None:
            # One line per failing run (the RPC's own line names only the first failure).
            logger.warning(
                "event handler %s failed on %s: %s",
                handler,
                type(event).__name__,
                outcome if outcome == "timeout" else f"{type(error).__name__}: {error}",
                extra={"handler": handler, "event": type(event).__name__, "outcome": outcome},
            )


class Metrics:
    """The server's metrics: a ``CollectorRegistry`` of its own, fed by calls and mediators."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.calls: dict[RpcLabels, CallSeries] = {}
        self.mediators: list[MediatorMetrics] = []
        self.retrying: RetryingMessageBroker | None = None  # its backlog is reported when set
        self.registry.register(self)
        path = multiprocess_dir()
        self.workers = WorkerSeries(self, path) if path is not None else None
        """Set in a worker of ``--workers``: its series, summed with the other workers'."""

    @property
    def scrape_registry(self) -> CollectorRegistry:
        """What ``/metrics`` serves: this server's series, or with ``--workers`` the sum over workers."""
        return self.workers.registry if self.workers is not None else self.registry

    def start(self) -> None:
        if self.workers is not None:
            self.workers.start()

    async def stop(self) -> None:
        if self.workers is not None:
            await self.workers.stop()

    def series(self, labels: RpcLabels) -> CallSeries:
        found = self.calls.get(labels)
        if found is None:
            found = self.calls[labels] = CallSeries(labels)
        return found

    def mediator(self, name: str, broker: str) -> MediatorMetrics:
        """A new observer for the mediator called ``name`` (attach the mediator once built)."""
        observer = MediatorMetrics(name, broker)
        self.mediators.append(observer)
        return observer

    def attach(self, mediators: typing.Mapping[str, StreamingRequestMediator | RequestMediator]) -> None:
        """Tell each mediator's observer which mediator it watches (its in-flight and limit gauges)."""
        for observer in self.mediators:
            observer.mediator = mediators.get(observer.name)

    # -- the prometheus_client collector ------------------------------------------------------
    def collect(self) -> typing.Iterable[Metric]:
        yield from self._rpc_families()
        yield from self._mediator_families()
        if self.retrying is not None:
            yield from self._backlog_families(self.retrying)

    def _backlog_families(self, broker: RetryingMessageBroker) -> typing.Iterator[Metric]:
        labels = [broker.name]
        pending = GaugeMetricFamily(
            "rill_broker_notifications_pending",
            "Notifications the broker could not take, kept to be re-sent.",
            labels=["broker"],
        )
        pending.add_metric(labels, broker.pending)
        resent = CounterMetricFamily(
            "rill_broker_notifications_resent", "Kept notifications the broker took later.", labels=["broker"]
        )
        resent.add_metric(labels, broker.resent)
        dropped = CounterMetricFamily(
            "rill_broker_notifications_dropped",
            "Notifications given up (backlog full, refused, or left at shutdown), each logged.",
            labels=["broker"],
        )
        dropped.add_metric(labels, broker.dropped)
        yield from (pending, resent, dropped)

    def _rpc_families(self) -> typing.Iterator[Metric]:
        names = list(RpcLabels._fields)
        started = CounterMetricFamily("grpc_server_started", "RPCs started on the server.", labels=names)
        received = CounterMetricFamily(
            "grpc_server_msg_received", "Request messages received (one per call).", labels=names
        )
        sent = CounterMetricFamily("grpc_server_msg_sent", "Response messages sent.", labels=names)
        handled = CounterMetricFamily(
            "grpc_server_handled", "RPCs completed, by status code.", labels=[*names, "grpc_code"]
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds", "Time from the start of an RPC to its status.", labels=names
        )
        first = HistogramMetricFamily(
            "rill_server_first_message_seconds",
            "Time from the start of a streaming RPC to its first response message.",
            labels=names,
        )
        wait = HistogramMetricFamily(
            "rill_server_client_wait_seconds",
            "Per stream: total time spent waiting for the client to take messages (a slow reader).",
            labels=names,
        )
        in_flight = GaugeMetricFamily("rill_server_in_flight", "RPCs being served now.", labels=names)
        for labels, series in list(self.calls.items()):
            values = list(labels)
            started.add_metric(values, series.started)
            received.add_metric(values, series.started)
            sent.add_metric(values, series.sent)
            for code, count in list(series.handled.items()):
                handled.add_metric([*values, code], count)
            handling.add_metric(values, series.handling.buckets(), series.handling.sum)
            in_flight.add_metric(values, series.in_flight)
            if labels.grpc_type == "server_stream":
                first.add_metric(values, series.first_message.buckets(), series.first_message.sum)
                wait.add_metric(values, series.wait.buckets(), series.wait.sum)
        yield from (started, received, sent, handled, handling, first, wait, in_flight)

    def _mediator_families(self) -> typing.Iterator[Metric]:
        items = CounterMetricFamily(
            "rill_mediator_items", "Items streams yielded to their consumer.", labels=["mediator", "request"]
        )
        events = CounterMetricFamily(
            "rill_mediator_events_emitted",
            "Events emitted by handlers, by type.",
            labels=["mediator", "event"],
        )
        runs = CounterMetricFamily(
            "rill_event_handler_runs",
            "Event-handler runs ended, by handler and outcome (ok, error, timeout, cancelled).",
            labels=["mediator", "handler", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "rill_event_handler_seconds", "Duration of event-handler runs.", labels=["mediator", "handler"]
        )
        running = GaugeMetricFamily(
            "rill_event_handlers_in_flight", "Event-handler runs going now.", labels=["mediator"]
        )
        limit = GaugeMetricFamily(
            "rill_event_handlers_limit", "max_concurrent_event_handlers in force.", labels=["mediator"]
        )
        abandoned = CounterMetricFamily(
            "rill_events_abandoned",
            "Event-handler runs given up by a drain (never started or cancelled), each logged.",
            labels=["mediator"],
        )
        strict = HistogramMetricFamily(
            "rill_mediator_strict_wait_seconds",
            "Time a strict stream held an item back while its events were handled.",
            labels=["mediator", "request"],
        )
        published = CounterMetricFamily(
            "rill_broker_notifications",
            "Notification events sent to the message broker, by outcome (published, failed).",
            labels=["broker", "outcome"],
        )
        notifications: collections.Counter[tuple[str, str]] = collections.Counter()
        for observer in self.mediators:
            name = observer.name
            for request_type, count in list(observer.items.items()):
                items.add_metric([name, request_type.__name__], count)
            for event_type, count in list(observer.events.items()):
                events.add_metric([name, event_type.__name__], count)
            for handler, stats in list(observer.handlers.items()):
                for outcome, count in list(stats.outcomes.items()):
                    runs.add_metric([name, handler, outcome], count)
                seconds.add_metric([name, handler], stats.seconds.buckets(), stats.seconds.sum)
                if handler == observer.broker:
                    ok = stats.outcomes["ok"]
                    notifications[handler, "published"] += ok
                    notifications[handler, "failed"] += sum(stats.outcomes.values()) - ok
            for request_type, histogram in list(observer.strict_wait.items()):
                strict.add_metric([name, request_type.__name__], histogram.buckets(), histogram.sum)
            if observer.mediator is not None:
                running.add_metric([name], observer.mediator.event_handlers_running)
                limit.add_metric([name], observer.mediator.max_concurrent_event_handlers)
                abandoned.add_metric([name], observer.mediator.events_abandoned)
        for (broker, outcome), count in notifications.items():
            published.add_metric([broker, outcome], count)
        yield from (items, events, runs, seconds, running, limit, abandoned, strict, published)
