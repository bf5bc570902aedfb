"""Hand-written fakes shared by the mediator tests: messages, a recorder, small helpers."""

import asyncio
import typing

import mediator
from mediator import bootstrap


class Produce(mediator.Request):
    """Ask a streaming handler for ``count`` items, tagged ``tag``."""

    count: int = 3
    tag: str = ""


class Item(mediator.Response):
    n: int
    tag: str = ""


class Happened(mediator.DomainEvent, frozen=True):
    n: int
    tag: str = ""


class Log:
    """An ordered record of what happened, appended to by handlers, event handlers and consumers."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def __call__(self, entry: str) -> None:
        self.entries.append(entry)

    def index(self, entry: str) -> int:
        return self.entries.index(entry)

    def __contains__(self, entry: object) -> bool:
        return entry in self.entries


class Running:
    """Counts event handlers running at once, and the most ever seen, from inside the handlers."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


def streaming(
    handler: type[mediator.StreamingRequestHandler[typing.Any, typing.Any]],
    events: dict[type[mediator.Event], list[type[mediator.EventHandler[typing.Any]]]] | None = None,
    **options: typing.Any,
) -> mediator.StreamingRequestMediator:
    """A streaming mediator (no container) serving ``Produce`` with ``handler``."""

    def commands(mapper: mediator.RequestMap) -> None:
        mapper.bind(Produce, handler)

    def domain_events(mapper: mediator.EventMap) -> None:
        for event_type, handlers in (events or {}).items():
            for event_handler in handlers:
                mapper.bind(event_type, event_handler)

    return bootstrap.bootstrap_streaming(
        di_container=None, commands_mapper=commands, domain_events_mapper=domain_events, **options
    )


async def collect(
    stream: typing.AsyncIterator[typing.Any], log: Log | None = None, into: list[typing.Any] | None = None
) -> list[typing.Any]:
    """Consume ``stream`` fully, logging ``consume <n>`` for every item when given a log.

    Items are appended to ``into`` when given, so a test still sees them if the stream raises.
    """
    items = into if into is not None else []
    async for item in stream:
        if log is not None:
            log(f"consume {item.n}")
        items.append(item)
    return items


def other_tasks() -> set[asyncio.Task[typing.Any]]:
    """Every task of the running loop but the caller's own."""
    return asyncio.all_tasks() - {asyncio.current_task()}
