"""rill's mediator: the spec's streaming CQRS mediator, with supervised, bounded event processing.

    import mediator as cqrs
    from mediator import bootstrap

The names the spec uses are all here; ``mediator.bootstrap``, ``mediator.exceptions``,
``mediator.container``, ``mediator.message_brokers``, ``mediator.unit_of_work`` (an item's changes
committed together) and ``mediator.observe`` (hooks for metrics and traces) hold the rest.
"""

from mediator._handlers import EventHandler, RequestHandler, StreamingRequestHandler
from mediator._maps import EventMap, RequestMap
from mediator._mediators import EventDelivery, RequestMediator, StreamingRequestMediator
from mediator._messages import DomainEvent, Event, NotificationEvent, Request, Response
from mediator._options import EventProcessing
from mediator.container import Container
from mediator.exceptions import (
    EventHandlerError,
    EventHandlerTimeout,
    EventHandlingError,
    HandlerNotFound,
    MediatorError,
)
from mediator.message_brokers.protocol import Message, MessageBroker

__all__ = [
    "Container",
    "DomainEvent",
    "Event",
    "EventDelivery",
    "EventHandler",
    "EventHandlerError",
    "EventHandlerTimeout",
    "EventHandlingError",
    "EventMap",
    "EventProcessing",
    "HandlerNotFound",
    "MediatorError",
    "Message",
    "MessageBroker",
    "NotificationEvent",
    "Request",
    "RequestHandler",
    "RequestMap",
    "RequestMediator",
    "Response",
    "StreamingRequestHandler",
    "StreamingRequestMediator",
]
