"""The outbox relay's Prometheus series, on the server's registry (``Metrics.registry``).

Unlike the per-item series of :mod:`server.metrics` (plain ints read by a custom collector), these
are ``prometheus_client`` metric objects: the relay updates them a few times per second at most, and
under prometheus_client's multiprocess mode (``--workers``) metric objects are what is aggregated.
The gauges read from the database (pending, oldest pending age, dead) hold the same value in every
process, so they are aggregated by ``livemax`` (the largest value among live processes: one
worker's value, not N times it; a worker that died is left out, where ``max`` would keep its last
value forever); the counters by sum (each relay counts what it did).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["RelayMetrics"]


class RelayMetrics:
    """Every series of one server's relay."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge(
            "rill_outbox_pending",
            "Outbox rows waiting to be published (due now or retrying later).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.oldest_pending_seconds = Gauge(
            "rill_outbox_oldest_pending_seconds",
            "Age of the oldest pending outbox row (0 when none): how far the relay is behind.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.dead = Gauge(
            "rill_outbox_dead",
            "Outbox rows given up after max_attempts, waiting for `python -m server outbox replay`.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.publishing = Gauge(
            "rill_outbox_relay_publishing",
            "Relays publishing now (1 per process on PostgreSQL; the lock holder only on SQLite).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.published = Counter(
            "rill_outbox_published", "Outbox rows the broker took (published).", registry=registry
        )
        self.failures = Counter(
            "rill_outbox_publish_failures",
            "Publish attempts of outbox rows that failed (each retried with backoff, or dead-lettered).",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "rill_outbox_dead_lettered",
            "Outbox rows this process gave up after max_attempts (each logged).",
            registry=registry,
        )
