"""``/metrics`` summed over the workers of ``python -m server --workers N``.

Each worker counts in plain Python (:mod:`server.metrics`: a ``prometheus_client`` counter would take a
lock on every item). With ``--workers`` the supervisor gives the workers one fresh
``PROMETHEUS_MULTIPROC_DIR``; each worker copies its series into prometheus_client's per-process files
there (its multiprocess mode) every ``interval`` seconds, before each scrape it answers, and when it
stops, and every worker's scrape endpoint serves ``MultiProcessCollector``: whichever worker a scrape
lands on, it reports the sum over all of them. Counters and histograms keep the counts of workers that
have exited (they were served); the gauges (in flight, limits, backlogs: each worker's own) are
``livesum``, the sum over the workers alive (the supervisor removes an exited worker's gauge file with
``mark_process_dead``). Another worker's figures are at most ``interval`` seconds old. Series kept in
``prometheus_client`` metric objects (the outbox relay's) are in those files already, with their own
``multiprocess_mode``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import typing

from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if typing.TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["WorkerSeries", "multiprocess_dir"]

LabelKey: typing.TypeAlias = tuple[tuple[str, str], ...]


def multiprocess_dir() -> str | None:
    """The ``PROMETHEUS_MULTIPROC_DIR`` this process writes its series to, or None (one process)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # prometheus_client picks its value class when imported: the variable must have been set before.
    if path and getattr(values.ValueClass, "_multiprocess", False):
        return path
    return None


class WorkerSeries:
    """Copies one worker's series (``source``) into its multiprocess file; serves the sum of all."""

    def __init__(self, source: Collector, path: str, *, interval: float = 1.0) -> None:
        self._source = source
        self._interval = interval
        # One prometheus_client value (an entry in this process's file) per sample, made once.
        self._values: dict[tuple[str, str, LabelKey], typing.Any] = {}
        self._task: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        """What the scrape endpoints serve: every worker's series, summed."""
        self.registry.register(_Summed(self, MultiProcessCollector(None, path)))  # type: ignore[no-untyped-call]

    def write(self) -> None:
        """This worker's series, now, into its file (on the event loop that updates them)."""
        for family in self._source.collect():
            if family.type == "counter":
                for sample in family.samples:
                    self._set("counter", family, sample.name, sample.labels, sample.value)
            elif family.type == "gauge":
                for sample in family.samples:
                    self._set("gauge", family, sample.name, sample.labels, sample.value, "livesum")
            elif family.type == "histogram":
                self._write_histogram(family)
            else:
                raise TypeError(f"{family.name}: a {family.type} cannot be summed over workers")

    def _write_histogram(self, family: Metric) -> None:
        # The file holds each bucket's own count (MultiProcessCollector adds them up again, and
        # derives _count); the collector gives cumulative ones.
        buckets: dict[LabelKey, list[tuple[float, str, float]]] = collections.defaultdict(list)
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = sample.labels["le"]
                others = sorted((name, value) for name, value in sample.labels.items() if name != "le")
                buckets[tuple(others)].append((float(le), le, sample.value))
            elif sample.name.endswith("_sum"):
                self._set("histogram", family, sample.name, sample.labels, sample.value)
        for labels, counts in buckets.items():
            below = 0.0
            for _, le, cumulative in sorted(counts):
                bucket = {**dict(labels), "le": le}
                self._set("histogram", family, f"{family.name}_bucket", bucket, cumulative - below)
                below = cumulative

    def _set(
        self,
        kind: str,
        family: Metric,
        name: str,
        labels: typing.Mapping[str, str],
        value: float,
        mode: str = "",
    ) -> None:
        key = (family.name, name, tuple(sorted(labels.items())))
        stored = self._values.get(key)
        if stored is None:
            names, label_values = zip(*key[2], strict=True) if key[2] else ((), ())
            stored = self._values[key] = values.ValueClass(
                kind, family.name, name, names, label_values, family.documentation, multiprocess_mode=mode
            )
        stored.set(value)

    def start(self) -> None:
        self.write()
        self._task = asyncio.create_task(self._every_interval(), name="rill-metrics-workers")

    async def stop(self) -> None:
        """The last copy: what this worker served until it stopped stays in the sum."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.write()

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # a period, not a wait for something
            self.write()


class _Summed(Collector):
    """The multiprocess files, read after this worker's own series were copied into its file."""

    def __init__(self, series: WorkerSeries, files: MultiProcessCollector) -> None:
        self._series = series
        self._files = files

    def collect(self) -> typing.Iterable[Metric]:
        self._series.write()
        return self._files.collect()  # type: ignore[no-untyped-call,no-any-return]
