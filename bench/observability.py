"""Observability overhead: end-to-end gRPC stream, 2 events per item, metrics and tracing on vs off.

One server process per configuration (built from the service's own pieces: ``CallRegistry`` with
``server.metrics.Metrics`` and ``server.tracing.Tracing``, the mediator with the matching observer,
the generic binding, grpc.aio), all started at once; a grpc.aio client in this process streams
``--items`` items from each in turn, in an order that rotates every round. Per item the handler
emits two domain events, each bound to one no-op event handler (strict delivery).

Configurations:

- ``off``: no metrics, no tracing: the mediator has no observer (its plain paths).
- ``metrics``: Prometheus metrics (the default of ``python -m server``), tracing off.
- ``metrics+tracing 0%``: tracing on, sampling ratio 0: spans are created but not recorded.
- ``metrics+tracing 100%``: every RPC and every event-handler run is a recorded span, through a
  ``BatchSpanProcessor`` to an exporter that drops them (an OTLP exporter adds its serialisation
  and network on top, in the processor's thread).

Reported per configuration: µs of wall time per item (what the client sees: throughput) and µs of
server CPU per item (from /proc: the server process's user+system time), medians over rounds, and the
ratios to ``off`` (median of per-round ratios). Target: metrics cost at most 5 % of throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import subprocess
import sys
import time
import typing

import grpc

import mediator
from mediator import bootstrap
from protos.orders.v1 import orders_pb2, orders_pb2_grpc

CONFIGS = ("off", "metrics", "metrics+tracing 0%", "metrics+tracing 100%")
TARGET_METRICS_COST = 0.05


# -- the server (a child process per configuration) ---------------------------------------------
async def _serve(config: str) -> None:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from server import Rpc, ServiceBinding, create_server
    from server.services.orders import (
        GetOrderQuery,
        OrderProcessedResult,
        OrderView,
    )
    from server.testing import isolated_settings
    from server.tracing import Tracing

    class Produce(mediator.Request):  # ProcessOrdersCommand without its 10,000-id limit
        order_ids: list[str]

    class Processed(mediator.DomainEvent, frozen=True):
        order_id: str

    class Analysed(mediator.DomainEvent, frozen=True):
        order_id: str

    class Handler(mediator.StreamingRequestHandler[Produce, OrderProcessedResult]):
        def __init__(self) -> None:
            self._events: list[mediator.Event] = []

        async def handle(self, request: Produce) -> typing.AsyncIterator[OrderProcessedResult]:
            now = datetime.datetime.now(datetime.UTC)
            for order_id in request.order_ids:
                self._events.append(Processed(order_id=order_id))
                self._events.append(Analysed(order_id=order_id))
                yield OrderProcessedResult(
                    order_id=order_id, status="processed", processed_at=now, items_count=1
                )

    class ProcessedHandler(mediator.EventHandler[Processed]):
        async def handle(self, event: Processed) -> None:
            pass

    class AnalysedHandler(mediator.EventHandler[Analysed]):
        async def handle(self, event: Analysed) -> None:
            pass

    class Drop(SpanExporter):
        def export(self, spans: typing.Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracing = None
    if "tracing" in config:
        tracing = Tracing.with_processor(BatchSpanProcessor(Drop()), 1.0 if config.endswith("100%") else 0.0)

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Produce, Handler)

    def events(mapper: mediator.EventMap) -> None:
        mapper.bind(Processed, ProcessedHandler)
        mapper.bind(Analysed, AnalysedHandler)

    streaming = bootstrap.bootstrap_streaming(commands_mapper=commands, domain_events_mapper=events)
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=streaming,
        unary=bootstrap.bootstrap(commands_mapper=commands),
        rpcs=[
            Rpc("ProcessOrders", Produce, OrderProcessedResult),
            Rpc("GetOrder", GetOrderQuery, OrderView),
        ],
    )
    # Served as production serves any binding; only metrics and tracing differ between configs.
    settings = isolated_settings(metrics=config != "off", limits={"stall_timeout": None})
    server = create_server(settings, services=[binding], tracing=tracing)
    await server.start()
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await server.stop(0)  # shuts the tracer down too


# -- the client ----------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class _Server:
    def __init__(self, config: str) -> None:
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.observability", "--serve", config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.address = f"127.0.0.1:{self.process.stdout.readline().strip()}"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


async def _stream(
    stub: orders_pb2_grpc.OrderServiceAsyncStub, request: orders_pb2.ProcessOrdersRequest
) -> int:
    count = 0
    async for _ in stub.ProcessOrders(request):
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench observability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=20_000, help="items per stream (default 20,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; medians reported (default 7)")
    parser.add_argument("--serve", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return 0
    servers = [_Server(config) for config in CONFIGS]
    try:
        wall, cpu = asyncio.run(_measure(servers, args.items, args.rounds))
    finally:
        for server in servers:
            server.close()
    _report(wall, cpu, args.items, args.rounds)
    return 0


async def _measure(
    servers: list[_Server], items: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    request = orders_pb2.ProcessOrdersRequest(order_ids=[f"order-{i}" for i in range(items)])
    wall: dict[str, list[float]] = {server.config: [] for server in servers}
    cpu: dict[str, list[float]] = {server.config: [] for server in servers}
    channels = [grpc.aio.insecure_channel(server.address) for server in servers]
    try:
        stubs = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
        warm = orders_pb2.ProcessOrdersRequest(order_ids=[f"w{i}" for i in range(min(items, 2000))])
        for stub in stubs:
            await _stream(stub, warm)
        for round_ in range(rounds):
            order = list(range(len(servers)))
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for index in order:
                server = servers[index]
                cpu_before, started = _cpu_seconds(server.process.pid), time.perf_counter()
                assert await _stream(stubs[index], request) == items
                elapsed = time.perf_counter() - started
                wall[server.config].append(elapsed / items * 1e6)
                cpu[server.config].append((_cpu_seconds(server.process.pid) - cpu_before) / items * 1e6)
            print(f"  round {round_ + 1}/{rounds} done", flush=True)
    finally:
        for channel in channels:
            await channel.close()
    return wall, cpu


def _report(wall: dict[str, list[float]], cpu: dict[str, list[float]], items: int, rounds: int) -> None:
    print(f"python:   {sys.version.split()[0]}; {items:,} items per stream, 2 no-op events per item, strict")
    print(f"runs:     {rounds} rounds, one stream per configuration per round, order rotating; medians")
    print()
    print(f"{'configuration':24} {'wall µs/item':>12} {'x off':>7} {'server CPU µs/item':>19} {'x off':>7}")
    base_wall, base_cpu = wall["off"], cpu["off"]
    ratios: dict[str, float] = {}
    for config in CONFIGS:
        wall_ratio = statistics.median(w / b for w, b in zip(wall[config], base_wall, strict=True))
        cpu_ratio = statistics.median(c / b for c, b in zip(cpu[config], base_cpu, strict=True))
        ratios[config] = wall_ratio
        print(
            f"{config:24} {statistics.median(wall[config]):12.2f} {wall_ratio:7.3f} "
            f"{statistics.median(cpu[config]):19.2f} {cpu_ratio:7.3f}"
        )
    print()
    cost = ratios["metrics"] - 1
    verdict = "met" if cost <= TARGET_METRICS_COST else "NOT met"
    print(f"target:   metrics cost {cost * 100:+.1f} % of wall time per item (target <= 5 %): {verdict}")
    print(f"tracing:  100 % sampled costs {(ratios['metrics+tracing 100%'] - 1) * 100:+.1f} % over off")


if __name__ == "__main__":
    sys.exit(main())
