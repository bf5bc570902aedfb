"""The message broker port and the envelope a notification travels in."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from mediator._messages import NotificationEvent

__all__ = ["Message", "MessageBroker", "broker_name"]


class Message(pydantic.BaseModel, frozen=True):
    """The stable envelope of one notification: what consumers of the broker receive."""

    message_id: uuid.UUID
    message_name: str
    topic: str
    occurred_at: datetime.datetime
    payload: typing.Any

    @classmethod
    def from_event(cls, event: NotificationEvent[typing.Any]) -> Message:
        payload = event.payload
        if isinstance(payload, pydantic.BaseModel):
            payload = payload.model_dump(mode="json")
        return cls(
            message_id=event.event_id,
            message_name=event.type_name,
            topic=event.topic,
            occurred_at=event.event_timestamp,
            payload=payload,
        )


@typing.runtime_checkable
class MessageBroker(typing.Protocol):
    """Where notification events go. ``send_message`` returns only once the broker has taken it."""

    async def send_message(self, message: Message) -> None: ...

    async def aclose(self) -> None: ...


def broker_name(broker: object) -> str:
    """What logs, metrics and traces call ``broker``: its ``name`` if it has one (a wrapper names the
    broker it wraps), else its class name."""
    name = getattr(broker, "name", None)
    return name if isinstance(name, str) and name else type(broker).__qualname__
