"""Hooks for watching a mediator at work: metrics, traces, logs (the service wires them up).

A mediator built with ``observer=None`` (the default) runs no hook at all: it picks its plain code
paths once, at construction. With an observer, the stream and every event-handler run report to it::

    class Printing(NullObserver):
        def event_handler_ended(self, event, handler, outcome, seconds, error):
            print(f"{handler} for {type(event).__name__}: {outcome} in {seconds * 1e3:.1f} ms")

    orders = bootstrap.bootstrap_streaming(..., observer=Printing())

Hooks are called on the event loop, in the stream's task or in the run's own task, and must not
block or raise. The in-flight count and the limit need no hook: read them from the mediator
(``event_handlers_running``, ``max_concurrent_event_handlers``) when they are wanted.
"""

from __future__ import annotations

import contextlib
import typing

from mediator._messages import Event, Request

__all__ = ["NULL_SCOPE", "MediatorObserver", "NullObserver", "Outcome"]

Outcome: typing.TypeAlias = typing.Literal["ok", "error", "timeout", "cancelled"]
"""How an event-handler run ended: returned, raised, ran out of ``event_handler_timeout``, cancelled."""

NULL_SCOPE: typing.ContextManager[object] = contextlib.nullcontext()
"""A scope that does nothing (reusable: ``nullcontext`` keeps no state)."""


class MediatorObserver(typing.Protocol):
    """What a mediator tells its observer. :class:`NullObserver` implements every hook as a no-op."""

    def item_yielded(self, request_type: type[Request]) -> None:
        """A stream of ``request_type`` delivered one item to its consumer."""

    def events_emitted(self, events: typing.Sequence[Event]) -> None:
        """A request handler (or an event handler, cascading) emitted ``events``."""

    def strict_waited(self, request_type: type[Request], seconds: float) -> None:
        """A strict stream held an item back ``seconds`` while its events were handled."""

    def event_handler_scope(
        self, event: Event, handler: str, item: int | None
    ) -> typing.ContextManager[object]:
        """Entered inside the run's own task around the handler (a tracing span, say).

        The run's task starts in a copy of the context the stream's events were submitted from, so
        a span current there (the RPC's) is the parent. ``item`` is the index of the stream item
        whose events led to this run (``None`` for a unary request). The scope sees the handler's
        exception, if any, in ``__exit__``; return :data:`NULL_SCOPE` for nothing.
        """
        ...

    def event_handler_ended(
        self, event: Event, handler: str, outcome: Outcome, seconds: float, error: BaseException | None
    ) -> None:
        """An event-handler run ended (``handler`` is the handler's class name, or the broker's)."""


class NullObserver:
    """Every hook, doing nothing: subclass it and override what you need."""

    def item_yielded(self, request_type: type[Request]) -> None:
        pass

    def events_emitted(self, events: typing.Sequence[Event]) -> None:
        pass

    def strict_waited(self, request_type: type[Request], seconds: float) -> None:
        pass

    def event_handler_scope(
        self, event: Event, handler: str, item: int | None
    ) -> typing.ContextManager[object]:
        return NULL_SCOPE

    def event_handler_ended(
        self, event: Event, handler: str, outcome: Outcome, seconds: float, error: BaseException | None
    ) -> None:
        pass
