"""Build mediators the way the spec does: from mapper functions and a DI container.

mediator = bootstrap.bootstrap_streaming(
    di_container=di.Container(),
    commands_mapper=commands_mapper,
    domain_events_mapper=domain_events_mapper,
    message_broker=devnull.DevnullMessageBroker(),
    max_concurrent_event_handlers=3,
    concurrent_event_handle_enable=True,
)
"""

from __future__ import annotations

import typing

from mediator._maps import EventMap, RequestMap
from mediator._mediators import EventDelivery, RequestMediator, StreamingRequestMediator
from mediator._options import EventProcessing
from mediator.behaviours import EventHandlerBehaviour, RequestBehaviour, StreamBehaviour
from mediator.message_brokers.protocol import MessageBroker
from mediator.observe import MediatorObserver
from mediator.unit_of_work import UnitOfWorkFactory

__all__ = ["bootstrap", "bootstrap_streaming"]

CommandsMapper: typing.TypeAlias = typing.Callable[[RequestMap], None]
EventsMapper: typing.TypeAlias = typing.Callable[[EventMap], None]


def _maps(
    commands_mapper: CommandsMapper | None, domain_events_mapper: EventsMapper | None
) -> tuple[RequestMap, EventMap]:
    request_map, event_map = RequestMap(), EventMap()
    if commands_mapper is not None:
        commands_mapper(request_map)
    if domain_events_mapper is not None:
        domain_events_mapper(event_map)
    return request_map, event_map


def bootstrap(
    di_container: object | None = None,
    commands_mapper: CommandsMapper | None = None,
    domain_events_mapper: EventsMapper | None = None,
    message_broker: MessageBroker | None = None,
    max_concurrent_event_handlers: int = 1,
    concurrent_event_handle_enable: bool = False,
    *,
    max_concurrent_event_handlers_per_stream: int | None = None,
    queries_mapper: CommandsMapper | None = None,
    event_handler_timeout: float | None = None,
    drain_timeout: float = 10.0,
    max_event_cascade_depth: int = 16,
    behaviours: typing.Sequence[RequestBehaviour] = (),
    event_handler_behaviours: typing.Sequence[EventHandlerBehaviour] = (),
    unit_of_work: UnitOfWorkFactory | None = None,
    observer: MediatorObserver | None = None,
) -> RequestMediator:
    """A :class:`RequestMediator` for regular (one response) handlers.

    ``queries_mapper`` binds into the same map as ``commands_mapper``: both are requests.
    ``behaviours`` wrap every ``send``, ``event_handler_behaviours`` every event-handler run, the
    first outermost (:mod:`mediator.behaviours`). With ``unit_of_work``, what the request's event
    handlers change is committed as one unit before ``send`` returns (:mod:`mediator.unit_of_work`).
    """
    request_map, event_map = _maps(commands_mapper, domain_events_mapper)
    if queries_mapper is not None:
        queries_mapper(request_map)
    events = EventProcessing(
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        max_concurrent_event_handlers_per_stream=max_concurrent_event_handlers_per_stream,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        event_handler_timeout=event_handler_timeout,
        drain_timeout=drain_timeout,
        max_event_cascade_depth=max_event_cascade_depth,
        event_handler_behaviours=event_handler_behaviours,
        unit_of_work=unit_of_work,
    )
    return RequestMediator(
        request_map,
        event_map,
        di_container,
        message_broker,
        events=events,
        behaviours=behaviours,
        observer=observer,
    )


def bootstrap_streaming(
    di_container: object | None = None,
    commands_mapper: CommandsMapper | None = None,
    domain_events_mapper: EventsMapper | None = None,
    message_broker: MessageBroker | None = None,
    max_concurrent_event_handlers: int = 10,
    concurrent_event_handle_enable: bool = True,
    *,
    max_concurrent_event_handlers_per_stream: int | None = None,
    event_delivery: EventDelivery | str = EventDelivery.STRICT,
    event_handler_timeout: float | None = None,
    drain_timeout: float = 10.0,
    max_event_cascade_depth: int = 16,
    behaviours: typing.Sequence[StreamBehaviour] = (),
    event_handler_behaviours: typing.Sequence[EventHandlerBehaviour] = (),
    unit_of_work: UnitOfWorkFactory | None = None,
    observer: MediatorObserver | None = None,
) -> StreamingRequestMediator:
    """A :class:`StreamingRequestMediator`, with the spec's defaults (10 handlers at once, concurrent).

    ``behaviours`` wrap every stream, ``event_handler_behaviours`` every event-handler run, the first
    outermost (:mod:`mediator.behaviours`). With ``unit_of_work``, what each item's event handlers
    change is committed as one unit, in ``strict`` delivery before the item is yielded
    (:mod:`mediator.unit_of_work`).
    """
    request_map, event_map = _maps(commands_mapper, domain_events_mapper)
    events = EventProcessing(
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        max_concurrent_event_handlers_per_stream=max_concurrent_event_handlers_per_stream,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        event_handler_timeout=event_handler_timeout,
        drain_timeout=drain_timeout,
        max_event_cascade_depth=max_event_cascade_depth,
        event_handler_behaviours=event_handler_behaviours,
        unit_of_work=unit_of_work,
    )
    return StreamingRequestMediator(
        request_map,
        event_map,
        di_container,
        message_broker,
        events=events,
        event_delivery=event_delivery,
        behaviours=behaviours,
        observer=observer,
    )
