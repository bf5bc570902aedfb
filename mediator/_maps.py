"""Which handler serves which request, and which handlers hear which event."""

from __future__ import annotations

import inspect
import typing

from mediator._handlers import EventHandler, RequestHandler, StreamingRequestHandler
from mediator._messages import Event, Request, Response
from mediator.exceptions import HandlerAlreadyBound, HandlerNotFound

__all__ = ["EventMap", "RequestMap"]

AnyRequestHandler: typing.TypeAlias = (
    "type[RequestHandler[typing.Any, typing.Any]] | type[StreamingRequestHandler[typing.Any, typing.Any]]"
)


def _check_handle(handler_type: type, *, want_generator: bool) -> None:
    handle = getattr(handler_type, "handle", None)
    if handle is None or getattr(handle, "__isabstractmethod__", False):
        raise TypeError(f"{handler_type.__qualname__} does not implement handle()")
    if want_generator and not inspect.isasyncgenfunction(handle):
        raise TypeError(
            f"{handler_type.__qualname__}.handle must be an async generator function "
            "(an `async def` that `yield`s each result)"
        )
    if not want_generator and not inspect.iscoroutinefunction(handle):
        raise TypeError(f"{handler_type.__qualname__}.handle must be an `async def` coroutine function")


_ResultT = typing.TypeVar("_ResultT", bound=Response | None)


class RequestMap:
    """Binds each request type to the one handler type that serves it."""

    def __init__(self) -> None:
        self._handlers: dict[type[Request], AnyRequestHandler] = {}

    def bind(
        self,
        request_type: type[Request[_ResultT]],
        handler_type: type[RequestHandler[typing.Any, _ResultT]]
        | type[StreamingRequestHandler[typing.Any, _ResultT]],
    ) -> None:
        """Bind ``request_type`` to ``handler_type``.

        Raises ``TypeError`` when the handler's ``handle`` does not fit its kind (a streaming handler
        must be an async generator) and :class:`HandlerAlreadyBound` when the type is bound already.
        """
        if not (isinstance(request_type, type) and issubclass(request_type, Request)):
            raise TypeError(f"{request_type!r} is not a mediator.Request subclass")
        if issubclass(handler_type, StreamingRequestHandler):
            _check_handle(handler_type, want_generator=True)
        elif issubclass(handler_type, RequestHandler):
            _check_handle(handler_type, want_generator=False)
        else:
            raise TypeError(
                f"{handler_type!r} is neither a RequestHandler nor a StreamingRequestHandler subclass"
            )
        bound = self._handlers.get(request_type)
        if bound is not None and bound is not handler_type:
            raise HandlerAlreadyBound(request_type, bound, handler_type)
        self._handlers[request_type] = handler_type

    def get(self, request_type: type[Request]) -> AnyRequestHandler:
        """The handler type bound to ``request_type``; :class:`HandlerNotFound` when there is none."""
        try:
            return self._handlers[request_type]
        except KeyError:
            raise HandlerNotFound(request_type) from None

    def __contains__(self, request_type: object) -> bool:
        return request_type in self._handlers

    def items(self) -> typing.ItemsView[type[Request], AnyRequestHandler]:
        return self._handlers.items()


class EventMap:
    """Binds event types to the handler types that hear them (any number per event type).

    A handler bound to an event type also hears that type's subclasses.
    """

    def __init__(self) -> None:
        self._bound: dict[type[Event], list[type[EventHandler[typing.Any]]]] = {}
        self._resolved: dict[type[Event], tuple[type[EventHandler[typing.Any]], ...]] = {}
        self.version = 0
        """Changes with every new binding: lets users of the map cache what they derive from it."""

    def bind(self, event_type: type[Event], handler_type: type[EventHandler[typing.Any]]) -> None:
        """Add ``handler_type`` to the handlers of ``event_type`` (binding the same pair twice is a no-op)."""
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"{event_type!r} is not a mediator.Event subclass")
        if not (isinstance(handler_type, type) and issubclass(handler_type, EventHandler)):
            raise TypeError(f"{handler_type!r} is not a mediator.EventHandler subclass")
        _check_handle(handler_type, want_generator=False)
        handlers = self._bound.setdefault(event_type, [])
        if handler_type not in handlers:
            handlers.append(handler_type)
        self._resolved.clear()
        self.version += 1

    def handlers_for(self, event_type: type[Event]) -> tuple[type[EventHandler[typing.Any]], ...]:
        """Every handler type for ``event_type``, most specific binding first, each once."""
        found = self._resolved.get(event_type)
        if found is None:
            ordered: dict[type[EventHandler[typing.Any]], None] = {}
            for klass in event_type.__mro__:
                for handler_type in self._bound.get(klass, ()):
                    ordered[handler_type] = None
            found = self._resolved[event_type] = tuple(ordered)
        return found

    def items(self) -> typing.ItemsView[type[Event], list[type[EventHandler[typing.Any]]]]:
        return self._bound.items()
