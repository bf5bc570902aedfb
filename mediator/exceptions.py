"""Errors raised by the mediator.

Every error the mediator raises on its own account derives from :class:`MediatorError`::

    MediatorError
    ├── HandlerNotFound            no handler is bound to the request's type
    ├── HandlerAlreadyBound        a request type was bound twice
    ├── EventHandlingError         event work failed; raised to the consumer
    │   ├── EventHandlerError      an event handler (or the broker) raised
    │   │   └── EventHandlerTimeout    ... or ran past ``event_handler_timeout``
    │   ├── EventCascadeTooDeep    events emitted by event handlers kept emitting events
    │   └── UnitOfWorkError        an item's unit of work could not be committed
    ├── BrokerError                a message broker could not take a notification
    │   └── BrokerUnavailable      ... because it cannot be reached
    └── MediatorClosed             the mediator was used after ``aclose()``

Handler exceptions and pydantic ``ValidationError`` pass through unchanged: the mediator never wraps
what a request handler raised. ``TypeError`` is raised for bad bindings (a streaming handler whose
``handle`` is not an async generator, and the like), as Python does for other misuse.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from mediator._messages import Event

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "EventCascadeTooDeep",
    "EventHandlerError",
    "EventHandlerTimeout",
    "EventHandlingError",
    "HandlerAlreadyBound",
    "HandlerNotFound",
    "MediatorClosed",
    "MediatorError",
    "UnitOfWorkError",
]


class MediatorError(Exception):
    """Root of the errors the mediator raises on its own account."""


class HandlerNotFound(MediatorError, LookupError):
    """No handler is bound to the request's type in the mediator's ``RequestMap``."""

    def __init__(self, request_type: type) -> None:
        self.request_type = request_type
        super().__init__(f"no handler is bound to {request_type.__qualname__}")


class HandlerAlreadyBound(MediatorError, ValueError):
    """A request type can have one handler only."""

    def __init__(self, request_type: type, bound: type, attempted: type) -> None:
        self.request_type = request_type
        super().__init__(
            f"{request_type.__qualname__} is already bound to {bound.__qualname__}; "
            f"cannot bind it to {attempted.__qualname__} as well"
        )


class EventHandlingError(MediatorError):
    """Processing the events of a stream failed; the stream ends with this error."""


class EventHandlerError(EventHandlingError):
    """An event handler, or the message broker, raised while handling ``event``.

    The original exception is ``__cause__``. When several runs failed in the same batch, the first
    is raised and the others are kept in :attr:`others`.
    """

    def __init__(self, event: Event, handler_name: str, reason: str | None = None) -> None:
        self.event = event
        self.handler_name = handler_name
        self.others: list[EventHandlerError] = []
        detail = f": {reason}" if reason else ""
        super().__init__(f"{handler_name} failed handling {type(event).__qualname__}{detail}")


class EventHandlerTimeout(EventHandlerError):
    """An event handler ran longer than the mediator's ``event_handler_timeout``."""

    def __init__(self, event: Event, handler_name: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(event, handler_name, f"timed out after {timeout:g} s")


class EventCascadeTooDeep(EventHandlingError):
    """Event handlers emitted events that emitted events ... past the allowed depth (a cycle?)."""

    def __init__(self, event: Event, depth: int) -> None:
        self.event = event
        self.depth = depth
        super().__init__(
            f"{type(event).__qualname__} was emitted at cascade depth {depth}; "
            "event handlers are probably emitting events in a cycle"
        )


class UnitOfWorkError(EventHandlingError):
    """The unit of work of an item (or a request) could not be committed: nothing of it was kept.

    ``event`` is the first event of the item; the unit's own exception is ``__cause__``.
    """

    def __init__(self, event: Event, reason: str) -> None:
        self.event = event
        super().__init__(f"the unit of work of {type(event).__qualname__} was not committed: {reason}")


class BrokerError(MediatorError):
    """A message broker could not take a notification."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """The message broker cannot be reached (after the broker's own retries)."""


class MediatorClosed(MediatorError, RuntimeError):
    """The mediator (or the broker) was used after ``aclose()``."""
