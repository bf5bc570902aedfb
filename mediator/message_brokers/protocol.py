"""The message broker port and the envelope a notification travels in."""

from __future__ import annotations

import datetime
import typing
import uuid

import pydantic

from mediator._messages import NotificationEvent

__all__ = ["Message", "MessageBroker"]


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
