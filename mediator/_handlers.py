"""The handler contracts: regular, streaming and event handlers.

Handlers keep the events they emit on ``self`` (the spec's ``events`` property and ``clear_events()``),
so the mediator builds a fresh handler for every request and every event it handles.
"""

from __future__ import annotations

import abc
import typing

from mediator._messages import Event, Request, Response

__all__ = ["EventHandler", "RequestHandler", "StreamingRequestHandler", "take_events"]

ReqT = typing.TypeVar("ReqT", bound=Request, contravariant=True)
ResT = typing.TypeVar("ResT", bound=Response | None, covariant=True)
EventT = typing.TypeVar("EventT", bound=Event, contravariant=True)


class _EmitsEvents:
    """Default ``events``/``clear_events`` for handlers that keep emitted events in ``self._events``.

    The spec's handlers define both themselves; handlers that emit nothing need neither.
    """

    @property
    def events(self) -> typing.Sequence[Event]:
        pending: list[Event] | None = self.__dict__.get("_events")
        return pending.copy() if pending else ()

    def clear_events(self) -> None:
        pending: list[Event] | None = self.__dict__.get("_events")
        if pending:
            pending.clear()


def take_events(handler: _EmitsEvents) -> typing.Sequence[Event]:
    """The events ``handler`` has emitted since last asked, cleared from it (the spec's protocol).

    ``clear_events()`` is called only when there were events: the spec's handlers copy their list
    in ``events``, and most items and event handlers emit nothing.
    """
    emitted = handler.events
    if emitted:
        handler.clear_events()
    return emitted


class RequestHandler(_EmitsEvents, abc.ABC, typing.Generic[ReqT, ResT]):
    """Handles one request and returns one response (the spec's "regular handler")."""

    @abc.abstractmethod
    async def handle(self, request: ReqT) -> ResT:
        """Handle ``request``; events it emits are processed before the response is returned."""


class StreamingRequestHandler(_EmitsEvents, abc.ABC, typing.Generic[ReqT, ResT]):
    """Handles one request by yielding responses one by one.

    ``handle`` must be an async generator function (``async def`` with ``yield``). The events it has
    emitted are taken after each ``yield``.
    """

    @abc.abstractmethod
    def handle(self, request: ReqT) -> typing.AsyncIterator[ResT]:
        """Yield the responses for ``request`` one at a time."""


class EventHandler(_EmitsEvents, abc.ABC, typing.Generic[EventT]):
    """Handles one domain event. Events it emits in turn are processed the same way."""

    @abc.abstractmethod
    async def handle(self, event: EventT) -> None:
        """Handle ``event``."""
