"""How a mediator processes events: one object instead of the same keyword list in every layer."""

from __future__ import annotations

import dataclasses
import typing

if typing.TYPE_CHECKING:
    from mediator.behaviours import EventHandlerBehaviour
    from mediator.unit_of_work import UnitOfWorkFactory

__all__ = ["EventProcessing"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventProcessing:
    """Event processing of one mediator (the spec's ``bootstrap`` keywords build it).

    ``max_concurrent_event_handlers`` is the ceiling for all the mediator's streams together;
    ``max_concurrent_event_handlers_per_stream`` one stream's part of it (None: all of it);
    ``concurrent_event_handle_enable=False`` runs a stream's events one at a time. A run past
    ``event_handler_timeout`` seconds fails; after a stream ended early each run may go on for
    ``drain_timeout`` seconds. ``event_handler_behaviours`` wrap every run (:mod:`mediator.behaviours`).
    With ``unit_of_work``, the runs of each item's events share one unit of work, committed when
    they all succeeded (:mod:`mediator.unit_of_work`).
    """

    max_concurrent_event_handlers: int = 10
    max_concurrent_event_handlers_per_stream: int | None = None
    concurrent_event_handle_enable: bool = True
    event_handler_timeout: float | None = None
    drain_timeout: float = 10.0
    max_event_cascade_depth: int = 16
    event_handler_behaviours: typing.Sequence[EventHandlerBehaviour] = ()
    unit_of_work: UnitOfWorkFactory | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent_event_handlers < 1:
            raise ValueError(
                "the limit of concurrent event handlers must be at least 1, "
                f"not {self.max_concurrent_event_handlers}"
            )
        share = self.max_concurrent_event_handlers_per_stream
        if share is not None and not 1 <= share <= self.max_concurrent_event_handlers:
            raise ValueError(
                "the per-stream limit of concurrent event handlers must be between 1 and "
                f"{self.max_concurrent_event_handlers}, not {share}"
            )
        timeout = self.event_handler_timeout
        if timeout is not None and timeout <= 0:
            raise ValueError(f"event_handler_timeout must be positive or None, not {timeout}")
        if self.drain_timeout < 0:
            raise ValueError(f"drain_timeout must not be negative, not {self.drain_timeout}")
        object.__setattr__(self, "event_handler_behaviours", tuple(self.event_handler_behaviours))

    @property
    def per_stream(self) -> int:
        """The per-stream bound in force (1 when concurrent handling is disabled)."""
        if not self.concurrent_event_handle_enable:
            return 1
        share = self.max_concurrent_event_handlers_per_stream
        return share if share is not None else self.max_concurrent_event_handlers
