"""Every fast path of the event side agrees with the plain path.

An event-handler run takes one of several paths: a handler built by a plain call and run in the run's
own coroutine (the fast path: no container coroutine, one coroutine fewer), one resolved through a
container's ``resolve``, one wrapped by ``event_handler_timeout`` or a behaviour, and one inside an
observer's scope (or an observer that keeps the null scope, which skips entering it). The same
scenario through each must give the same outcome: what was handled, in what order per stream, the
cascades, and the same error for a failing handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest
from dependency_injector import containers, providers

import mediator
from mediator import bootstrap
from mediator.behaviours import NextEventRun
from mediator.observe import NullObserver
from tests.mediator.fakes import Happened, Item, Produce, collect


class Cascaded(mediator.DomainEvent, frozen=True):
    n: int


RECORD: list[str] = []


class Records(mediator.EventHandler[Happened]):
    def __init__(self) -> None:
        self._events: list[mediator.Event] = []

    async def handle(self, event: Happened) -> None:
        await asyncio.sleep(0)
        if event.tag == "fail" and event.n == 1:
            raise LookupError(f"no such thing as {event.n}")
        RECORD.append(f"happened {event.n}")
        self._events.append(Cascaded(n=event.n))


class RecordsCascade(mediator.EventHandler[Cascaded]):
    async def handle(self, event: Cascaded) -> None:
        RECORD.append(f"cascaded {event.n}")


class Emitting(mediator.StreamingRequestHandler[Produce, Item]):
    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        for n in range(request.count):
            self._events = [Happened(n=n, tag=request.tag)]
            yield Item(n=n)


class Resolving:
    """A container that only resolves (no plain factory): the container path."""

    async def resolve(self, type_: type[typing.Any]) -> typing.Any:
        await asyncio.sleep(0)
        return type_()


class ClockedRecords(Records):
    """Stands in for ``Records`` in the dependency_injector containers: built with a dependency."""

    def __init__(self, clock: str) -> None:
        super().__init__()
        self.clock = clock


async def _clock() -> str:
    await asyncio.sleep(0)  # a dependency that really suspends: its provider returns awaitables
    return "tick"


class SyncProviders(containers.DeclarativeContainer):
    clock = providers.Object("tick")
    records = providers.Factory(ClockedRecords, clock=clock)


class AsyncProviders(containers.DeclarativeContainer):
    clock = providers.Coroutine(_clock)
    records = providers.Factory(ClockedRecords, clock=clock)


class Scoped(NullObserver):
    def event_handler_scope(self, event: mediator.Event, handler: str, item: int | None) -> typing.Any:
        return contextlib.nullcontext()


async def passing(event: mediator.Event, handler: str, call_next: NextEventRun) -> typing.Any:
    return await call_next()


PATHS: dict[str, dict[str, typing.Any]] = {
    "plain build, own coroutine (fast)": {},
    "container resolve": {"di_container": Resolving()},
    # The provider called directly: an instance from sync providers, an awaitable from async ones.
    "dependency_injector, sync providers (direct factory)": {"di_container": SyncProviders()},
    "dependency_injector, an async dependency (direct factory's awaitable)": {
        "di_container": AsyncProviders()
    },
    "dependency_injector, async, with an observer": {
        "di_container": AsyncProviders(),
        "observer": NullObserver(),
    },
    "event_handler_timeout": {"event_handler_timeout": 30},
    "behaviour": {"event_handler_behaviours": [passing]},
    "observer keeping the null scope": {"observer": NullObserver()},
    "observer with a scope": {"observer": Scoped()},
}


def events(mapper: mediator.EventMap) -> None:
    mapper.bind(Happened, Records)
    mapper.bind(Cascaded, RecordsCascade)


def run(options: dict[str, typing.Any], tag: str) -> tuple[list[str], BaseException | None, list[Item]]:
    RECORD.clear()
    mediator_ = bootstrap.bootstrap_streaming(
        commands_mapper=lambda mapper: mapper.bind(Produce, Emitting),
        domain_events_mapper=events,
        **{"di_container": None, **options},
    )
    items: list[Item] = []
    error: BaseException | None = None
    try:
        asyncio.run(collect(mediator_.stream(Produce(count=3, tag=tag)), into=items))
    except mediator.EventHandlerError as raised:
        error = raised
    return list(RECORD), error, items


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("tag", ["ok", "fail"])
def test_each_event_path_agrees_with_the_plain_one(path: str, tag: str) -> None:
    expected_record, expected_error, expected_items = run({}, tag)
    record, error, items = run(PATHS[path], tag)
    assert record == expected_record
    assert items == expected_items
    assert (type(error), str(error), type(error.__cause__) if error else None) == (
        type(expected_error),
        str(expected_error),
        type(expected_error.__cause__) if expected_error else None,
    )
    if tag == "ok":
        assert record == [f"{kind} {n}" for n in range(3) for kind in ("happened", "cascaded")]
    else:
        assert error is not None
        assert "LookupError: no such thing as 1" in str(error)


class Outcomes(NullObserver):
    """Keeps the outcome of every run, as the service's metrics see it."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def event_handler_ended(
        self, event: mediator.Event, handler: str, outcome: str, seconds: float, error: BaseException | None
    ) -> None:
        self.outcomes.append(f"{handler} {outcome}")


class HangsOnce(mediator.EventHandler[Happened]):
    """Hangs on item 1 (until cancelled); on item 2 swallows the cancellation and returns."""

    async def handle(self, event: Happened) -> None:
        await asyncio.sleep(0)  # suspends: the run outlives its eager start, so a timer is armed
        if event.n == 0:
            RECORD.append("quick 0")
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            RECORD.append(f"cancelled {event.n}")
            if event.n == 2:
                return  # swallowed: the run ends normally, as under asyncio.timeout
            raise


class ScopedOutcomes(Outcomes):
    def event_handler_scope(self, event: mediator.Event, handler: str, item: int | None) -> typing.Any:
        return contextlib.nullcontext()


class One(mediator.StreamingRequestHandler[Produce, Item]):
    """One item, whose one event is ``Happened(n=request.count)``."""

    async def handle(self, request: Produce) -> typing.AsyncIterator[Item]:
        self._events = [Happened(n=request.count)]
        yield Item(n=request.count)


def timed_run(options: dict[str, typing.Any], n: int, scoped: bool) -> tuple[list[str], str, list[str]]:
    RECORD.clear()
    observer = ScopedOutcomes() if scoped else Outcomes()
    mediator_ = bootstrap.bootstrap_streaming(
        commands_mapper=lambda mapper: mapper.bind(Produce, One),
        domain_events_mapper=lambda mapper: mapper.bind(Happened, HangsOnce),
        event_handler_timeout=0.05,
        observer=observer,
        **{"di_container": None, **options},
    )
    outcome = "ok"
    try:
        asyncio.run(collect(mediator_.stream(Produce(count=n))))
    except mediator.EventHandlerError as raised:
        outcome = f"{type(raised).__name__}: {raised}"
    return list(RECORD), outcome, observer.outcomes


TIMED_PATHS: dict[str, dict[str, typing.Any]] = {
    "plain build (the batch's timer)": {},
    "container resolve (the batch's timer)": {"di_container": Resolving()},
    "behaviour (asyncio.timeout per attempt, inside it)": {"event_handler_behaviours": [passing]},
}


@pytest.mark.parametrize("path", list(TIMED_PATHS))
@pytest.mark.parametrize("scoped", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_the_timer_armed_by_the_batch_agrees_with_the_timeout_inside_behaviours(
    path: str, scoped: bool, n: int
) -> None:
    # Without behaviours the batch bounds a run with a timer armed once the run has suspended; with
    # them, asyncio.timeout bounds each attempt inside them. Same outcome either way: the run fails
    # with EventHandlerTimeout, its handler sees the cancellation, the observer counts a timeout; a
    # handler that swallows the cancellation ends normally.
    assert (
        timed_run(TIMED_PATHS[path], n, scoped)
        == {
            0: (["quick 0"], "ok", ["HangsOnce ok"]),
            1: (
                ["cancelled 1"],
                "EventHandlerTimeout: HangsOnce failed handling Happened: timed out after 0.05 s",
                ["HangsOnce timeout"],
            ),
            2: (["cancelled 2"], "ok", ["HangsOnce ok"]),
        }[n]
    )
