"""Event parallelism: 8 slow events after one item under limits 1/4/8/off; overlapped vs strict delivery.

Mediator level (no gRPC). Part 1: a handler yields one item and emits 8 events, each handled by a
handler that sleeps ``--event-ms`` (default 50 ms); the stream is read to its end (strict delivery:
every event is handled before the item is delivered). Measured: time from ``stream()`` to the end
of the stream, against the ideal ``ceil(8/k) * 50 ms`` for ``max_concurrent_event_handlers=k``, and
``8 * 50 ms`` with ``concurrent_event_handle_enable=False``. python-cqrs 5.3.0 runs the same handler
code for comparison. Part 2: ``--items`` items (default 10), each taking ``--work-ms`` (default 20)
to produce, each with one event whose handler takes ``--slow-ms`` (default 20): strict delivery
costs about ``items * (work + slow)``, overlapped about ``items * work + slow``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
from bench import _common
from mediator import bootstrap as our_bootstrap
from mediator.message_brokers import devnull as our_devnull

EVENTS = 8


def _classes(
    lib: types.ModuleType, event_seconds: float, work_seconds: float
) -> tuple[type, type, type, type]:
    # The bases are attributes of a module chosen at run time: mypy sees them as Any (the ignores).
    class Command(lib.Request):  # type: ignore[name-defined,misc]
        items: int
        events_per_item: int

    class Item(lib.Response):  # type: ignore[name-defined,misc]
        index: int

    class Slow(lib.DomainEvent, frozen=True):  # type: ignore[name-defined,misc,call-arg]
        index: int

    class Handler(lib.StreamingRequestHandler[Command, Item]):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self._events: list[typing.Any] = []

        @property
        def events(self) -> list[typing.Any]:
            return self._events.copy()

        def clear_events(self) -> None:
            self._events.clear()

        async def handle(self, request: Command) -> typing.AsyncIterator[Item]:
            for index in range(request.items):
                if work_seconds:
                    await asyncio.sleep(work_seconds)
                self._events.extend(Slow(index=index) for _ in range(request.events_per_item))
                yield Item(index=index)

    class SlowHandler(lib.EventHandler[Slow]):  # type: ignore[name-defined,misc]
        async def handle(self, event: Slow) -> None:
            await asyncio.sleep(event_seconds)

    return Command, Handler, Slow, SlowHandler


def _mediator(
    lib: types.ModuleType, classes: tuple[type, type, type, type], **settings: typing.Any
) -> typing.Any:
    command, handler, event, event_handler = classes

    def commands(mapper: typing.Any) -> None:
        mapper.bind(command, handler)

    def events(mapper: typing.Any) -> None:
        mapper.bind(event, event_handler)

    if lib is mediator:
        return our_bootstrap.bootstrap_streaming(
            di_container=di.Container(),
            commands_mapper=commands,
            domain_events_mapper=events,
            message_broker=our_devnull.DevnullMessageBroker(),
            **settings,
        )
    settings.pop("event_delivery", None)
    return cqrs_bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=commands,
        domain_events_mapper=events,
        message_broker=cqrs_devnull.DevnullMessageBroker(),
        **settings,
    )


async def _time(streaming: typing.Any, request: typing.Any) -> float:
    started = time.perf_counter()
    async for _item in streaming.stream(request):
        pass
    return time.perf_counter() - started


async def run(options: argparse.Namespace) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    event_s = options.event_ms / 1000
    part1: list[tuple[str, ...]] = []
    for limit in (1, 4, 8, None):
        ideal = (EVENTS if limit is None else math.ceil(EVENTS / limit)) * event_s
        figures = []
        for lib in (mediator, cqrs):
            classes = _classes(lib, event_s, 0.0)
            streaming = _mediator(
                lib,
                classes,
                max_concurrent_event_handlers=limit or 1,
                concurrent_event_handle_enable=limit is not None,
            )
            request = classes[0](items=1, events_per_item=EVENTS)
            await _time(streaming, request)  # warm-up
            figures.append(
                statistics.median([await _time(streaming, request) for _ in range(options.rounds)])
            )
        part1.append(
            (
                "off (sequential)" if limit is None else str(limit),
                f"{ideal * 1e3:.0f}",
                f"{figures[0] * 1e3:.1f}",
                f"{figures[0] / ideal:.3f}",
                f"{figures[1] * 1e3:.1f}",
                f"{figures[1] / ideal:.3f}",
            )
        )
    part2: list[tuple[str, ...]] = []
    work_s, slow_s = options.work_ms / 1000, options.slow_ms / 1000
    for delivery, ideal in (
        ("strict", options.items * (work_s + slow_s)),
        ("overlapped", options.items * work_s + slow_s),
    ):
        classes = _classes(mediator, slow_s, work_s)
        streaming = _mediator(
            mediator,
            classes,
            max_concurrent_event_handlers=10,
            concurrent_event_handle_enable=True,
            event_delivery=delivery,
        )
        request = classes[0](items=options.items, events_per_item=1)
        seconds = statistics.median([await _time(streaming, request) for _ in range(options.rounds)])
        part2.append((delivery, f"{ideal * 1e3:.0f}", f"{seconds * 1e3:.1f}", f"{seconds / ideal:.3f}"))
    return part1, part2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.event_parallelism", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--event-ms", type=float, default=50.0, help="each of the 8 events (default 50 ms)")
    parser.add_argument("--items", type=int, default=10, help="part 2: items (default 10)")
    parser.add_argument(
        "--work-ms", type=float, default=20.0, help="part 2: per item production (default 20)"
    )
    parser.add_argument("--slow-ms", type=float, default=20.0, help="part 2: per item event (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="medians over rounds (default 5)")
    options = parser.parse_args(argv)
    for line in _common.environment(("rill-grpc", "pydantic", "python-cqrs", "di")):
        print(line)
    logger = __import__("logging").getLogger("cqrs")
    logger.addHandler(__import__("logging").NullHandler())
    with _common.Noise(list) as noise:
        part1, part2 = asyncio.run(run(options))
    print(f"runs:     medians of {options.rounds} runs, asyncio loop")
    print(noise.line)
    print()
    print(f"8 events of {options.event_ms:g} ms after one item (strict delivery): stream start -> end")
    print(
        _common.table(
            ("limit k", "ideal ms", "ours ms", "ours x ideal", "python-cqrs ms", "cqrs x ideal"), part1
        )
    )
    print()
    print(
        f"{options.items} items of {options.work_ms:g} ms work, one {options.slow_ms:g} ms event each "
        "(limit 10): stream start -> end"
    )
    print(_common.table(("delivery", "ideal ms", "ours ms", "x ideal"), part2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
