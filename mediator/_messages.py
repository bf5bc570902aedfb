"""The messages a mediator carries: requests, responses and events (pydantic v2 models)."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic
import typing_extensions

__all__ = ["DomainEvent", "Event", "NotificationEvent", "Request", "Response"]


# A default (PEP 696), so that the spec's bare ``Request`` means ``Request[Any]``, also under mypy --strict.
ResultT = typing_extensions.TypeVar("ResultT", default=typing.Any)


class Request(pydantic.BaseModel, typing.Generic[ResultT]):
    """A command or query sent to exactly one handler.

    It may declare what it answers, so that the type checker knows what comes back::

        class GetOrder(mediator.Request[OrderView]): ...          # send() returns an OrderView
        class ProcessOrders(mediator.Request[OrderProcessed]): ... # stream() yields OrderProcessed

    The spec's ``class GetOrder(mediator.Request)`` declares nothing: its results are ``Any``.
    """


class Response(pydantic.BaseModel):
    """What a handler returns, or yields item by item for a streaming request."""


class Event(pydantic.BaseModel):
    """Something that happened. Handlers emit events; the mediator processes them after each item."""


class DomainEvent(Event):
    """An in-process fact, handled by every ``EventHandler`` bound to its type in the ``EventMap``.

    Subclass it as the spec does: ``class OrderProcessed(DomainEvent, frozen=True): ...``.
    """


PayloadT = typing.TypeVar("PayloadT")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class NotificationEvent(Event, typing.Generic[PayloadT]):
    """A fact other services must hear about: sent to the mediator's message broker.

    ``topic`` is the routing key; ``event_name`` defaults to the class name when left empty.
    """

    event_id: uuid.UUID = pydantic.Field(default_factory=uuid.uuid4)
    event_timestamp: datetime.datetime = pydantic.Field(default_factory=_utcnow)
    event_name: str = ""
    topic: str
    payload: PayloadT

    @property
    def type_name(self) -> str:
        """The name consumers see: ``event_name``, or the class name when that is empty."""
        return self.event_name or type(self).__name__
