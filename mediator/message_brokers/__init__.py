"""Message brokers that notification events are sent to.

``protocol`` defines the port; ``devnull`` and ``memory`` ship with the library. Adapters for real
brokers are optional extras, imported only by name (``import mediator`` never imports them).
"""

from mediator.message_brokers.protocol import Message, MessageBroker

__all__ = ["Message", "MessageBroker"]
