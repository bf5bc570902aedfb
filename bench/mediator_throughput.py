"""Mediator throughput: µs per streamed item, ours vs python-cqrs 5.3.0 vs a bare async generator.

The workload is the spec's "Complete Example" without its sleep: a streaming handler yields one
``OrderProcessedResult`` per order id and, with events on, emits an ``OrderProcessedEvent`` and an
``OrderAnalyticsEvent`` per item, each bound to one no-op event handler. The classes are built by one
factory from each library's own base classes (``mediator.Request``/``Response``/``DomainEvent``, which
are pydantic models; ``cqrs.Request``/``Response``/``DomainEvent``, which are dataclasses in 5.3), so
the handlers are the same code.

Paths, each with 0 and with 2 domain events per item:

- floor: the same handler's ``handle()`` (our pydantic items) iterated directly with ``async for``;
  with events, the consumer clears the handler's event list after each item (events are built, never
  dispatched). A second floor row does the same with python-cqrs's dataclass items, for reference.
- ours: ``mediator.bootstrap.bootstrap_streaming(di_container=di.Container(), ...)``, strict and
  overlapped event delivery.
- python-cqrs: ``cqrs.bootstrap.requests.bootstrap_streaming(di_container=di.Container(), ...)``
  with ``concurrent_event_handle_enable=True``. With events it costs ~200 µs per item, so it streams
  ``--cqrs-events-items`` items (default items/10); every figure is per item.

Every path runs once per round, all in one event loop, in an order that rotates each round, so
machine noise hits them alike; the tables show the median over rounds, and ratios are the median of
the per-round ratios. Logging stays at its default configuration (python-cqrs itself sets its
``cqrs`` logger to DEBUG on import, so it creates a record per event handler run); a ``NullHandler``
on ``cqrs`` keeps those records from being printed, but they are still created, as users get them.
"""

import argparse
import asyncio
import collections
import cProfile
import dataclasses
import datetime
import gc
import logging
import pstats
import statistics
import sys
import time
import types
import typing

import cqrs
import di
from cqrs.bootstrap import requests as cqrs_bootstrap
from cqrs.message_brokers import devnull as cqrs_devnull

import mediator
from bench._common import Noise, environment
from mediator import bootstrap as our_bootstrap
from mediator.message_brokers import devnull as our_devnull

TARGET_FLOOR_RATIO = 1.3  # ours with 0 events: at most this many times the floor
TARGET_SPEEDUP = 10.0  # ours with 2 events: at least this many times faster than python-cqrs
MAX_CONCURRENT_EVENT_HANDLERS = 10  # the spec's default for the streaming mediator, used by both

# Event-handler runs by handler class; only the sanity check turns it on (the handlers stay no-ops).
_counts: collections.Counter[type] | None = None


# -- the workload ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Workload:
    """The spec's classes, built from one library's base classes."""

    library: str
    command: type
    handler: type[typing.Any]  # either library's handler class: its methods are not known here
    events: tuple[tuple[type, type], ...]  # (event type, its one handler type)

    def commands_mapper(self, mapper: typing.Any) -> None:
        mapper.bind(self.command, self.handler)

    def domain_events_mapper(self, mapper: typing.Any) -> None:
        for event_type, handler_type in self.events:
            mapper.bind(event_type, handler_type)

    def request(self, items: int, *, emit_events: bool) -> typing.Any:
        return self.command(order_ids=[f"order{i}" for i in range(items)], emit_events=emit_events)


def _workload(lib: types.ModuleType) -> Workload:
    """The same handler code over ``lib``'s base classes (``mediator`` or ``cqrs``).

    The bases are attributes of a module chosen at run time: mypy sees them as ``Any`` (the ignores).
    """

    class ProcessOrdersCommand(lib.Request):  # type: ignore[name-defined,misc]
        order_ids: list[str]
        emit_events: bool = False

    class OrderProcessedResult(lib.Response):  # type: ignore[name-defined,misc]
        order_id: str
        status: str
        processed_at: datetime.datetime
        items_count: int

    class OrderProcessedEvent(lib.DomainEvent, frozen=True):  # type: ignore[name-defined,misc,call-arg]
        order_id: str
        customer_id: str
        total_amount: float

    class OrderAnalyticsEvent(lib.DomainEvent, frozen=True):  # type: ignore[name-defined,misc,call-arg]
        order_id: str
        category: str

    class ProcessOrdersCommandHandler(
        lib.StreamingRequestHandler[ProcessOrdersCommand, OrderProcessedResult]  # type: ignore[name-defined,misc]
    ):
        def __init__(self) -> None:
            self._events: list[typing.Any] = []

        @property
        def events(self) -> list[typing.Any]:
            return self._events.copy()

        def clear_events(self) -> None:
            self._events.clear()

        async def handle(self, request: ProcessOrdersCommand) -> typing.AsyncIterator[OrderProcessedResult]:
            emit_events = request.emit_events
            for order_id in request.order_ids:
                result = OrderProcessedResult(
                    order_id=order_id,
                    status="processed",
                    processed_at=datetime.datetime.now(),
                    items_count=3,
                )
                if emit_events:
                    self._events.append(
                        OrderProcessedEvent(
                            order_id=order_id,
                            customer_id=f"customer_{order_id}",
                            total_amount=100.0,
                        )
                    )
                    self._events.append(OrderAnalyticsEvent(order_id=order_id, category="electronics"))
                yield result

    class OrderProcessedEventHandler(lib.EventHandler[OrderProcessedEvent]):  # type: ignore[name-defined,misc]
        async def handle(self, event: OrderProcessedEvent) -> None:
            if _counts is not None:
                _counts[type(self)] += 1

    class OrderAnalyticsEventHandler(lib.EventHandler[OrderAnalyticsEvent]):  # type: ignore[name-defined,misc]
        async def handle(self, event: OrderAnalyticsEvent) -> None:
            if _counts is not None:
                _counts[type(self)] += 1

    return Workload(
        library=lib.__name__,
        command=ProcessOrdersCommand,
        handler=ProcessOrdersCommandHandler,
        events=(
            (OrderProcessedEvent, OrderProcessedEventHandler),
            (OrderAnalyticsEvent, OrderAnalyticsEventHandler),
        ),
    )


OURS = _workload(mediator)
THEIRS = _workload(cqrs)


# -- the paths ------------------------------------------------------------------------------------
Consume: typing.TypeAlias = typing.Callable[[typing.Any], typing.Awaitable[int]]


def _floor(workload: Workload) -> Consume:
    async def consume(request: typing.Any) -> int:
        handler = workload.handler()
        count = 0
        if request.emit_events:
            async for _item in handler.handle(request):
                handler.clear_events()
                count += 1
        else:
            async for _item in handler.handle(request):
                count += 1
        return count

    return consume


def _streamed(streaming_mediator: typing.Any) -> Consume:
    async def consume(request: typing.Any) -> int:
        count = 0
        async for _item in streaming_mediator.stream(request):
            count += 1
        return count

    return consume


def _ours(event_delivery: str) -> Consume:
    return _streamed(
        our_bootstrap.bootstrap_streaming(
            di_container=di.Container(),
            commands_mapper=OURS.commands_mapper,
            domain_events_mapper=OURS.domain_events_mapper,
            message_broker=our_devnull.DevnullMessageBroker(),
            max_concurrent_event_handlers=MAX_CONCURRENT_EVENT_HANDLERS,
            concurrent_event_handle_enable=True,
            event_delivery=event_delivery,
        )
    )


def _theirs() -> Consume:
    return _streamed(
        cqrs_bootstrap.bootstrap_streaming(
            di_container=di.Container(),
            commands_mapper=THEIRS.commands_mapper,
            domain_events_mapper=THEIRS.domain_events_mapper,
            message_broker=cqrs_devnull.DevnullMessageBroker(),
            max_concurrent_event_handlers=MAX_CONCURRENT_EVENT_HANDLERS,
            concurrent_event_handle_enable=True,
        )
    )


@dataclasses.dataclass
class Case:
    key: str  # e.g. "ours-strict-2": what --profile takes
    path: str  # the row's label
    kind: str  # "floor", "ours", "cqrs" or "info"
    events: int  # domain events per item
    workload: Workload
    consume: Consume
    items: int
    seconds_per_item: list[float] = dataclasses.field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.seconds_per_item) * 1e6


def _cases(items: int, cqrs_events_items: int) -> list[Case]:
    cases: list[Case] = []
    for events in (0, 2):
        cases += [
            Case(
                f"floor-{events}", "floor (bare async generator)", "floor", events, OURS, _floor(OURS), items
            ),
            Case(
                f"floor-dataclass-{events}",
                "  floor, python-cqrs's dataclass items",
                "info",
                events,
                THEIRS,
                _floor(THEIRS),
                items,
            ),
            Case(f"ours-strict-{events}", "ours, strict", "ours", events, OURS, _ours("strict"), items),
            Case(
                f"ours-overlapped-{events}",
                "ours, overlapped",
                "ours",
                events,
                OURS,
                _ours("overlapped"),
                items,
            ),
            Case(
                f"cqrs-{events}",
                "python-cqrs 5.3.0",
                "cqrs",
                events,
                THEIRS,
                _theirs(),
                cqrs_events_items if events else items,
            ),
        ]
    return cases


# -- measuring ------------------------------------------------------------------------------------
class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1


async def _sanity_check(cases: list[Case], items: int) -> dict[str, float]:
    """Run every path once on a few items (a warm-up too); check items and event-handler runs.

    Returns the log records python-cqrs created per item, by case key.
    """
    global _counts
    records_per_item: dict[str, float] = {}
    cqrs_logger = logging.getLogger("cqrs")
    for case in cases:
        request = case.workload.request(items, emit_events=bool(case.events))
        counter = _CountingHandler()
        cqrs_logger.addHandler(counter)
        _counts = collections.Counter()
        try:
            delivered = await case.consume(request)
            handled = dict(_counts)
        finally:
            _counts = None
            cqrs_logger.removeHandler(counter)
        if delivered != items:
            raise AssertionError(f"{case.key}: {delivered} items delivered, {items} expected")
        dispatched = case.kind in ("ours", "cqrs") and case.events > 0
        expected = {handler: items for _, handler in case.workload.events} if dispatched else {}
        if handled != expected:
            raise AssertionError(f"{case.key}: event handler runs {handled}, expected {expected}")
        records_per_item[case.key] = counter.records / items
    return records_per_item


async def _measure(cases: list[Case], rounds: int) -> None:
    requests = {case.key: case.workload.request(case.items, emit_events=bool(case.events)) for case in cases}
    for round_ in range(rounds):
        shift = round_ % len(cases)
        for case in cases[shift:] + cases[:shift]:
            request = requests[case.key]
            gc.collect()
            started = time.perf_counter()
            delivered = await case.consume(request)
            elapsed = time.perf_counter() - started
            if delivered != case.items:
                raise AssertionError(f"{case.key}: {delivered} items delivered, {case.items} expected")
            case.seconds_per_item.append(elapsed / case.items)
        print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)


async def _run(cases: list[Case], check_items: int, rounds: int) -> tuple[dict[str, float], float, str]:
    """Check and warm up, then measure, in one event loop (the mediators are built once, outside it).

    Returns the log records python-cqrs created per item, the seconds measuring took, and how busy the
    rest of the machine was meanwhile ("" where /proc/stat cannot be read).
    """
    records = await _sanity_check(cases, check_items)
    started = time.perf_counter()
    with Noise(lambda: ()) as noise:
        await _measure(cases, rounds)
    took = time.perf_counter() - started
    return records, took, noise.line.removeprefix("noise:    while measuring, ")


def _ratio(numerator: Case, denominator: Case) -> float:
    """The median over rounds of the per-round ratio (both ran in the same round)."""
    pairs = zip(numerator.seconds_per_item, denominator.seconds_per_item, strict=True)
    return statistics.median(a / b for a, b in pairs)


# -- reporting ------------------------------------------------------------------------------------
def _environment() -> list[str]:
    loop = asyncio.new_event_loop()
    loop.close()
    event_path = (
        "eager tasks (Python >= 3.12)" if sys.version_info >= (3, 12) else "plain tasks (Python 3.11)"
    )
    return [
        *environment(("rill-grpc", "pydantic", "pydantic-core", "di", "python-cqrs")),
        f"loop:     asyncio {type(loop).__name__}; our event path: {event_path}",
    ]


def _print_table(cases: list[Case]) -> None:
    header = ("events", "path", "items", "µs/item", "rounds min-max", "x floor", "cqrs/this")
    rows: list[tuple[str, ...]] = []
    for events in (0, 2):
        group = [case for case in cases if case.events == events]
        floor = next(case for case in group if case.kind == "floor")
        theirs = next(case for case in group if case.kind == "cqrs")
        for case in group:
            spread = f"{min(case.seconds_per_item) * 1e6:.2f}-{max(case.seconds_per_item) * 1e6:.2f}"
            x_floor = "1.00" if case is floor else f"{_ratio(case, floor):.2f}"
            speedup = f"{_ratio(theirs, case):.1f}" if case.kind == "ours" else ""
            rows.append(
                (str(events), case.path, f"{case.items:,}", f"{case.median_us:.2f}", spread, x_floor, speedup)
            )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    left = {1}
    line = "  ".join("-" * width for width in widths)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    print(fmt(header))
    print(line)
    previous = rows[0][0]
    for row in rows:
        if row[0] != previous:
            print(line)
            previous = row[0]
        print(fmt(row))


def _check_targets(cases: list[Case]) -> list[tuple[str, bool]]:
    by_key = {case.key: case for case in cases}
    results: list[tuple[str, bool]] = []
    for mode in ("strict", "overlapped"):
        ratio = _ratio(by_key[f"ours-{mode}-0"], by_key["floor-0"])
        met = round(ratio, 2) <= TARGET_FLOOR_RATIO
        results.append(
            (f"ours ({mode}), 0 events: {ratio:.2f}x floor (target <= {TARGET_FLOOR_RATIO}x)", met)
        )
    for mode in ("strict", "overlapped"):
        speedup = _ratio(by_key["cqrs-2"], by_key[f"ours-{mode}-2"])
        met = round(speedup, 1) >= TARGET_SPEEDUP
        results.append(
            (
                f"ours ({mode}), 2 events: {speedup:.1f}x faster than python-cqrs "
                f"(target >= {TARGET_SPEEDUP:g}x)",
                met,
            )
        )
    return results


# -- entry points ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mediator_throughput",
        description=(__doc__ or "").strip().splitlines()[0],
    )
    parser.add_argument("--items", type=int, default=100_000, help="items per run (default 100,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument(
        "--cqrs-events-items",
        type=int,
        default=None,
        help="items for python-cqrs with 2 events per item (default: items/10; it costs ~200 µs per item)",
    )
    parser.add_argument(
        "--check-items", type=int, default=2_000, help="items in the sanity check / warm-up (default 2,000)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a target is missed (default: report only)",
    )
    parser.add_argument(
        "--profile",
        metavar="CASE",
        help="instead of measuring, run one case (e.g. ours-strict-2) under a profiler and print its report",
    )
    parser.add_argument(
        "--profiler",
        choices=("cprofile", "pyinstrument"),
        default="cprofile",
        help="for --profile: cProfile (stdlib) or pyinstrument (pip install it yourself; not a dependency)",
    )
    return parser


def _profile(cases: list[Case], key: str, profiler_name: str, top: int = 30) -> int:
    chosen = {case.key: case for case in cases}.get(key)
    if chosen is None:
        print(f"no case {key!r}; cases: {', '.join(case.key for case in cases)}", file=sys.stderr)
        return 2
    request = chosen.workload.request(chosen.items, emit_events=bool(chosen.events))
    warm_up = chosen.workload.request(1_000, emit_events=bool(chosen.events))
    if profiler_name == "pyinstrument":
        try:
            import pyinstrument  # type: ignore[import-not-found]  # optional, not a dependency
        except ImportError:
            print("pyinstrument is not installed: .venv/bin/pip install pyinstrument", file=sys.stderr)
            return 2
        sampler = pyinstrument.Profiler(interval=0.0005)

        async def sample() -> None:
            await chosen.consume(warm_up)
            sampler.start()
            await chosen.consume(request)
            sampler.stop()

        asyncio.run(sample())
        print(f"pyinstrument profile of {key}, {chosen.items:,} items:")
        print(sampler.output_text(unicode=True, color=False))
        return 0

    profiler = cProfile.Profile()

    async def run() -> None:
        await chosen.consume(warm_up)
        profiler.enable()
        await chosen.consume(request)
        profiler.disable()

    asyncio.run(run())
    print(f"cProfile of {key}, {chosen.items:,} items (cProfile's overhead inflates every call):")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(top)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    if options.items < 1 or options.rounds < 1:
        raise SystemExit("--items and --rounds must be at least 1")
    cqrs_events_items = options.cqrs_events_items or max(options.items // 10, 1)
    cases = _cases(options.items, cqrs_events_items)

    # Output suppressed, records still created: see the module docstring.
    cqrs_logger = logging.getLogger("cqrs")
    silencer = logging.NullHandler()
    cqrs_logger.addHandler(silencer)
    try:
        if options.profile:
            return _profile(cases, options.profile, options.profiler)
        for line in _environment():
            print(line)
        check_items = min(options.check_items, options.items)
        records, took, noise = asyncio.run(_run(cases, check_items, options.rounds))
    finally:
        cqrs_logger.removeHandler(silencer)

    print(
        f"runs:     {options.items:,} items per run; python-cqrs with 2 events per item: "
        f"{cqrs_events_items:,} items (figures are per item); {options.rounds} rounds interleaved in "
        f"one event loop, {took:.0f} s; µs/item is the median over rounds, ratios the median of "
        "per-round ratios"
    )
    print(
        "logging:  default config; python-cqrs sets logger 'cqrs' to "
        f"{logging.getLevelName(cqrs_logger.level)} on import and created "
        f"{records['cqrs-0']:g} (0 events) / {records['cqrs-2']:g} (2 events) log records per item; "
        "a NullHandler on 'cqrs' kept them from being printed"
    )
    if noise:
        print(f"noise:    while measuring, {noise}")
    print(
        "checked:  every run delivered all its items; in a warm-up run of "
        f"{min(options.check_items, options.items):,} items each event handler ran once per item"
    )
    print()
    _print_table(cases)
    print()
    results = _check_targets(cases)
    for text, met in results:
        print(f"target:   {text}: {'met' if met else 'MISSED'}")
    return 1 if options.check and not all(met for _, met in results) else 0


if __name__ == "__main__":
    sys.exit(main())
