"""The mediators: send a request to its handler, process the events it emits.

``RequestMediator.send`` returns one response; ``StreamingRequestMediator.stream`` yields responses
as the handler yields them. Both build a fresh handler per request and process events through the
mediator's own :class:`EventDispatcher`, bounded by ``max_concurrent_event_handlers``.

Event delivery for streams (``event_delivery``):

``"strict"`` (default)
    The events of item *n*, and the events their handlers emit, are all handled before item *n*
    reaches the consumer. A failure ends the stream before item *n* is delivered.
``"overlapped"``
    Item *n* reaches the consumer at once; its events run in the background, under the same bound,
    while the handler produces item *n + 1*. The handler is not asked for the next item while runs of
    this stream are still queued for a slot, so a fast handler cannot pile up unbounded work. The stream
    ends only when every event has been handled; a failure ends it at the next item boundary (once a
    failure is known, no further item is delivered).

Guarantees for both:

- Every event the handler emitted is handled: after each item, after the last item, and after the
  handler raised (those events describe work that did happen).
- A failing event handler never cuts its siblings short: every run of the batch ends, then the first
  failure is raised as :class:`~mediator.exceptions.EventHandlerError` naming the event and the handler.
- If the consumer stops early (``aclose()``, ``break`` under ``aclosing``, or its task is cancelled),
  the handler's generator is closed first (its ``finally`` runs), then the events already emitted are
  handled to completion: each run may go on for ``drain_timeout`` seconds from the start of the drain
  (or from its own start, if it was queued for a slot); runs still going after that are cancelled,
  each logged with its event and counted (``events_abandoned``). Queued runs are never dropped for
  lack of time. No task the mediator created outlives the stream.

Fairness: ``max_concurrent_event_handlers`` is the ceiling for all the mediator's streams together;
one stream has at most ``max_concurrent_event_handlers_per_stream`` runs going at once (the ceiling
unless set, as in the spec; 1 with ``concurrent_event_handle_enable=False``), and slots that free go
to the streams that wait in turn. Set it below the ceiling (the service's default is half) and one
stream's slow or hanging handlers never hold every slot.
"""

from __future__ import annotations

import enum
import time
import typing

from mediator._dispatch import EventBatch, EventDispatcher
from mediator._handlers import RequestHandler, StreamingRequestHandler, take_events
from mediator._maps import EventMap, RequestMap
from mediator._messages import Request, Response
from mediator._options import EventProcessing
from mediator.behaviours import RequestBehaviour, StreamBehaviour, wrap_request, wrap_stream
from mediator.container import Resolver
from mediator.message_brokers.devnull import DevnullMessageBroker
from mediator.message_brokers.protocol import MessageBroker
from mediator.observe import MediatorObserver

__all__ = ["EventDelivery", "RequestMediator", "StreamingRequestMediator"]

ResT = typing.TypeVar("ResT", bound=Response | None)
_ResultT = typing.TypeVar("_ResultT")

_Handler: typing.TypeAlias = (
    "RequestHandler[typing.Any, typing.Any] | StreamingRequestHandler[typing.Any, typing.Any]"
)


class EventDelivery(enum.StrEnum):
    """When a stream's item reaches the consumer relative to the handling of its events."""

    STRICT = "strict"
    OVERLAPPED = "overlapped"


_REQUEST_EVENTS = EventProcessing(max_concurrent_event_handlers=1, concurrent_event_handle_enable=False)
_STREAM_EVENTS = EventProcessing()  # the spec's defaults for streams


class _Mediator:
    def __init__(
        self,
        request_map: RequestMap,
        event_map: EventMap | None = None,
        container: object | None = None,
        message_broker: MessageBroker | None = None,
        *,
        events: EventProcessing,
        observer: MediatorObserver | None = None,
    ) -> None:
        self.request_map = request_map
        self._resolver = Resolver(container)
        self.observer = observer
        """Watches streams and event-handler runs (:mod:`mediator.observe`); may be set after
        construction, before use (a server gives one to every mediator it serves)."""
        self.event_processing = events
        self._dispatcher = EventDispatcher(
            resolver=self._resolver,
            event_map=event_map if event_map is not None else EventMap(),
            broker=message_broker if message_broker is not None else DevnullMessageBroker(),
            options=events,
        )

    @property
    def event_handler_timeout(self) -> float | None:
        return self._dispatcher.event_handler_timeout

    @property
    def drain_timeout(self) -> float:
        return self._dispatcher.drain_timeout

    @property
    def message_broker(self) -> MessageBroker:
        """Where this mediator's notification events go."""
        return self._dispatcher.broker

    @property
    def max_concurrent_event_handlers(self) -> int:
        """The ceiling: event-handler runs of all this mediator's streams at once."""
        return self._dispatcher.limiter.limit

    @property
    def max_concurrent_event_handlers_per_stream(self) -> int:
        """The most runs one stream (or request) may have at once (1 when concurrent event handling
        is disabled; the ceiling unless set)."""
        return self._dispatcher.limiter.per_share

    @property
    def events_abandoned(self) -> int:
        """Event-handler runs that drains gave up (each was logged with its event)."""
        return self._dispatcher.events_abandoned

    @property
    def draining(self) -> int:
        """Streams (or requests) that ended early and are still finishing their events."""
        return len(self._dispatcher.draining)

    def abandon_drains(self, reason: str) -> int:
        """End every drain still going (a server that cannot wait any longer): their remaining runs
        are cancelled or never started, each logged with its event id and counted. Returns how many
        drains were ended; each ends in its own task, once that task runs."""
        return self._dispatcher.abandon_drains(reason)

    @property
    def event_handlers_running(self) -> int:
        return self._dispatcher.limiter.in_use

    @property
    def peak_event_handlers_running(self) -> int:
        """The most event-handler runs this mediator has had going at once."""
        return self._dispatcher.limiter.peak

    async def _finish_abnormally(self, handler: _Handler, batch: EventBatch) -> None:
        _take_events(handler, batch)
        await batch.drain()


class RequestMediator(_Mediator):
    """Sends a request to its ``RequestHandler`` and returns the one response.

    The events the handler emitted are all handled before ``send`` returns.
    """

    def __init__(
        self,
        request_map: RequestMap,
        event_map: EventMap | None = None,
        container: object | None = None,
        message_broker: MessageBroker | None = None,
        *,
        events: EventProcessing = _REQUEST_EVENTS,
        behaviours: typing.Sequence[RequestBehaviour] = (),
        observer: MediatorObserver | None = None,
    ) -> None:
        super().__init__(request_map, event_map, container, message_broker, events=events, observer=observer)
        self.behaviours = tuple(behaviours)

    async def send(self, request: Request[_ResultT]) -> _ResultT:
        """Handle ``request`` and return the handler's response."""
        handler_type = self.request_map.get(type(request))
        if not issubclass(handler_type, RequestHandler):
            raise TypeError(
                f"{type(request).__qualname__} is bound to the streaming handler "
                f"{handler_type.__qualname__}: use StreamingRequestMediator.stream()"
            )
        handler = await self._resolver.resolve(handler_type)
        batch = EventBatch(self._dispatcher, self.observer)
        finished = False
        try:
            if self.behaviours:
                response = await wrap_request(self.behaviours, request, lambda: handler.handle(request))
            else:
                response = await handler.handle(request)
            _take_events(handler, batch)
            await batch.wait()
            finished = True
            # The handler bound to the request's type answers what the request declares (checked
            # statically by RequestMap.bind); the map itself holds handlers of any type.
            return typing.cast(_ResultT, response)
        finally:
            if not finished:
                await self._finish_abnormally(handler, batch)


class StreamingRequestMediator(_Mediator):
    """Streams a request's responses from its ``StreamingRequestHandler`` as they are yielded."""

    def __init__(
        self,
        request_map: RequestMap,
        event_map: EventMap | None = None,
        container: object | None = None,
        message_broker: MessageBroker | None = None,
        *,
        events: EventProcessing = _STREAM_EVENTS,
        event_delivery: EventDelivery | str = EventDelivery.STRICT,
        behaviours: typing.Sequence[StreamBehaviour] = (),
        observer: MediatorObserver | None = None,
    ) -> None:
        super().__init__(request_map, event_map, container, message_broker, events=events, observer=observer)
        self.event_delivery = EventDelivery(event_delivery)
        self.behaviours = tuple(behaviours)

    def stream(self, request: Request[_ResultT]) -> typing.AsyncGenerator[_ResultT, None]:
        """Yield the handler's responses for ``request`` one by one (see the module docs).

        Close the generator if you may stop early (``contextlib.aclosing``), so that the handler is
        closed and the events are drained at once rather than when the generator is collected.
        """
        handler_type = self.request_map.get(type(request))
        if not issubclass(handler_type, StreamingRequestHandler):
            raise TypeError(
                f"{type(request).__qualname__} is bound to {handler_type.__qualname__}, which is not a "
                "StreamingRequestHandler: use RequestMediator.send()"
            )
        return self._stream(handler_type, request, strict=self.event_delivery is EventDelivery.STRICT)

    async def _stream(
        self,
        handler_type: type[StreamingRequestHandler[typing.Any, typing.Any]],
        request: Request,
        *,
        strict: bool,
    ) -> typing.AsyncGenerator[typing.Any, None]:
        build = self._resolver.plain_factory(handler_type)
        handler = build() if build is not None else await self._resolver.resolve(handler_type)
        observer = self.observer
        batch = EventBatch(self._dispatcher, observer)
        opened: list[typing.AsyncGenerator[typing.Any, None]] = []  # the handler's streams, with behaviours
        if self.behaviours:

            def handler_stream() -> typing.AsyncIterator[typing.Any]:
                started = typing.cast(typing.AsyncGenerator[typing.Any, None], handler.handle(request))
                opened.append(started)
                return started

            items: typing.AsyncIterator[typing.Any] = wrap_stream(self.behaviours, request, handler_stream)
        else:
            items = handler.handle(request)
        index = 0
        finished = False
        try:
            async for item in items:
                if batch.failures:
                    # A failure known before this item's events are taken (overlapped: one of an
                    # earlier item's; strict: one left by an earlier wait) ends the stream here.
                    await batch.wait()
                emitted = take_events(handler)
                if emitted:
                    batch.submit(emitted, 0, index)
                    # Queued runs count too: an item waits for runs that wait for a slot.
                    if strict and (batch.running or batch.queued or batch.failures):
                        if observer is None:
                            await batch.wait()
                        else:
                            await _timed_wait(batch, observer, type(request))
                if observer is not None:
                    observer.item_yielded(type(request))
                yield item
                index += 1
                if not strict and (batch.failures or batch.queued):
                    if batch.failures:
                        await batch.wait()
                    await batch.wait_started()
            for handler_items in opened:
                await handler_items.aclose()  # a behaviour that stopped early left the handler open
            _take_events(handler, batch)
            if batch.running or batch.queued or batch.failures:
                await batch.wait()
            finished = True
        finally:
            if not finished:
                try:
                    await _close(items)
                    for handler_items in opened:
                        await handler_items.aclose()  # closing a behaviour does not close what it read
                finally:
                    await self._finish_abnormally(handler, batch)


async def _close(items: typing.AsyncIterator[typing.Any]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


async def _timed_wait(batch: EventBatch, observer: MediatorObserver, request_type: type[Request]) -> None:
    started = time.perf_counter()
    try:
        await batch.wait()
    finally:
        observer.strict_waited(request_type, time.perf_counter() - started)


def _take_events(handler: _Handler, batch: EventBatch) -> None:
    """Move the handler's pending events into ``batch``."""
    emitted = take_events(handler)
    if emitted:
        batch.submit(emitted)
