"""Event processing: who handles an event, and the batch of runs a stream owns.

An :class:`EventDispatcher` belongs to one mediator: it knows the event map, the broker, the
container and the mediator-wide :class:`ConcurrencyLimiter`. Each request or stream opens an
:class:`EventBatch`, which owns every run it starts (one task per event-handler run) until the run
ends; the stream does not end, normally or not, before its batch has settled or been drained.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import typing

from mediator._handlers import EventHandler
from mediator._limiter import ConcurrencyLimiter, Ticket
from mediator._maps import EventMap
from mediator._messages import Event, NotificationEvent
from mediator.container import Resolver
from mediator.exceptions import (
    EventCascadeTooDeep,
    EventHandlerError,
    EventHandlerTimeout,
    EventHandlingError,
)
from mediator.message_brokers.protocol import Message, MessageBroker

__all__ = ["EventBatch", "EventDispatcher"]

logger = logging.getLogger("mediator")

Emitted: typing.TypeAlias = typing.Sequence[Event]
Target: typing.TypeAlias = "type[EventHandler[typing.Any]] | MessageBroker"


class _TimedOut(Exception):
    """Raised inside a run when the mediator's own timeout (not the handler's) expired."""


if sys.version_info >= (3, 12):

    def _start_task(coro: typing.Coroutine[typing.Any, typing.Any, Emitted]) -> asyncio.Task[Emitted]:
        # An eager task runs the handler at once, up to its first real suspension, with
        # current_task() set to the new task; a no-op handler is done before this returns.
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)

else:  # pragma: no cover - exercised on 3.11 only

    def _start_task(coro: typing.Coroutine[typing.Any, typing.Any, Emitted]) -> asyncio.Task[Emitted]:
        return asyncio.get_running_loop().create_task(coro)


class _Run:
    """One event going to one target (an event handler type, or the broker)."""

    __slots__ = ("depth", "event", "target")

    def __init__(self, event: Event, target: Target, depth: int) -> None:
        self.event = event
        self.target = target
        self.depth = depth

    @property
    def target_name(self) -> str:
        target = self.target
        return target.__qualname__ if isinstance(target, type) else type(target).__qualname__


class EventDispatcher:
    """The event side of one mediator; shared by all its streams."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        event_map: EventMap,
        broker: MessageBroker,
        max_concurrent_event_handlers: int,
        concurrent_event_handle_enable: bool,
        event_handler_timeout: float | None,
        drain_timeout: float,
        max_cascade_depth: int,
    ) -> None:
        if event_handler_timeout is not None and event_handler_timeout <= 0:
            raise ValueError(f"event_handler_timeout must be positive or None, not {event_handler_timeout}")
        if drain_timeout < 0:
            raise ValueError(f"drain_timeout must not be negative, not {drain_timeout}")
        self.resolver = resolver
        self.event_map = event_map
        self.broker = broker
        self.limiter = ConcurrencyLimiter(
            max_concurrent_event_handlers if concurrent_event_handle_enable else 1
        )
        self.event_handler_timeout = event_handler_timeout
        self.drain_timeout = drain_timeout
        self.max_cascade_depth = max_cascade_depth
        self._targets: dict[type[Event], tuple[tuple[Target, ...], tuple[Target, ...]]] = {}

    def targets(self, event_type: type[Event]) -> tuple[Target, ...]:
        """The handlers bound to ``event_type``, then the broker if it is a notification."""
        # The event map caches its answer until a new binding; ours follows that answer, so a
        # handler bound after the mediator was first used is not missed.
        handlers: tuple[Target, ...] = self.event_map.handlers_for(event_type)
        cached = self._targets.get(event_type)
        if cached is not None and cached[0] is handlers:
            return cached[1]
        found = (*handlers, self.broker) if issubclass(event_type, NotificationEvent) else handlers
        self._targets[event_type] = (handlers, found)
        return found

    def invoke(self, run: _Run) -> typing.Coroutine[typing.Any, typing.Any, Emitted]:
        target = run.target
        if isinstance(target, type):
            coro = self._handle(target, run.event)
        else:
            coro = self._publish(target, typing.cast(NotificationEvent[typing.Any], run.event))
        if self.event_handler_timeout is None:
            return coro
        return self._bounded(coro, self.event_handler_timeout)

    async def _handle(self, handler_type: type[EventHandler[typing.Any]], event: Event) -> Emitted:
        handler = await self.resolver.resolve(handler_type)
        await handler.handle(event)
        emitted = handler.events
        if emitted:
            handler.clear_events()
        return emitted

    @staticmethod
    async def _publish(broker: MessageBroker, event: NotificationEvent[typing.Any]) -> Emitted:
        await broker.send_message(Message.from_event(event))
        return ()

    @staticmethod
    async def _bounded(coro: typing.Coroutine[typing.Any, typing.Any, Emitted], seconds: float) -> Emitted:
        # asyncio.timeout turns its own cancellation into a TimeoutError raised by the `async with`
        # itself, so that is where ours is told apart from a TimeoutError the handler raised.
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await coro
        except TimeoutError:
            if deadline.expired():
                raise _TimedOut from None
            raise
        raise AssertionError("unreachable")  # pragma: no cover - asyncio.timeout re-raises


class EventBatch:
    """The event-handler runs of one stream (or one request): started, owned, awaited.

    ``submit`` never blocks: a run starts at once when the mediator has a free slot, otherwise it
    queues for one (first come, first served across the mediator's streams). Failures are collected
    and raised by ``wait`` once every run has ended, so a failing handler never cuts its siblings short.
    """

    __slots__ = (
        "_abandoning",
        "_dispatcher",
        "_failures",
        "_queued",
        "_running",
        "_settled",
        "_started",
    )

    def __init__(self, dispatcher: EventDispatcher) -> None:
        self._dispatcher = dispatcher
        self._running: dict[asyncio.Task[Emitted], _Run] = {}
        self._queued: dict[Ticket, _Run] = {}
        self._failures: list[EventHandlingError] = []
        self._settled: asyncio.Future[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._abandoning = ""  # why the batch gave up on its runs, once it has

    @property
    def settled(self) -> bool:
        """No run is going or queued."""
        return not self._running and not self._queued

    @property
    def has_queued(self) -> bool:
        return bool(self._queued)

    @property
    def failed(self) -> bool:
        return bool(self._failures)

    def submit(self, events: Emitted, depth: int = 0) -> None:
        """Start (or queue) a run for every target of every event, in emission order."""
        dispatcher = self._dispatcher
        limiter = dispatcher.limiter
        for event in events:
            if depth > dispatcher.max_cascade_depth:
                self._failures.append(EventCascadeTooDeep(event, depth))
                continue
            for target in dispatcher.targets(type(event)):
                run = _Run(event, target, depth)
                if limiter.try_acquire():
                    self._start(run)
                else:
                    self._queued[limiter.enqueue(self._start_queued)] = run

    def _start_queued(self, ticket: Ticket) -> None:
        self._start(self._queued.pop(ticket))
        if not self._queued:
            # The slot may have come from another stream's run: nothing of this batch ends here
            # to call _wake(), yet a stream waiting in wait_started() may go on now.
            self._wake()

    def _start(self, run: _Run) -> None:
        task = _start_task(self._dispatcher.invoke(run))
        if task.done():
            self._finish(task, run)
        else:
            self._running[task] = run
            task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[Emitted]) -> None:
        self._finish(task, self._running.pop(task))

    def _finish(self, task: asyncio.Task[Emitted], run: _Run) -> None:
        self._dispatcher.limiter.release()
        if task.cancelled():
            if not self._abandoning:
                self._failures.append(EventHandlerError(run.event, run.target_name, "cancelled"))
        else:
            error = task.exception()
            if error is None:
                emitted = task.result()
                if emitted and self._abandoning:
                    logger.error(
                        "%d events emitted by %s were not handled: %s",
                        len(emitted),
                        run.target_name,
                        self._abandoning,
                    )
                elif emitted:
                    self.submit(emitted, run.depth + 1)
            else:
                self._failures.append(self._wrap(error, run))
        self._wake()

    def _wrap(self, error: BaseException, run: _Run) -> EventHandlingError:
        if isinstance(error, _TimedOut):
            timeout = self._dispatcher.event_handler_timeout or 0.0
            return EventHandlerTimeout(run.event, run.target_name, timeout)
        wrapped = EventHandlerError(run.event, run.target_name, f"{type(error).__name__}: {error}")
        wrapped.__cause__ = error
        return wrapped

    def _wake(self) -> None:
        if self._queued:
            return
        started = self._started
        if started is not None and not started.done():
            started.set_result(None)
        if self._running:
            return
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)

    async def wait(self) -> None:
        """Wait until every run has ended, then raise the first failure (others on ``.others``)."""
        if not self.settled:
            self._settled = asyncio.get_running_loop().create_future()
            try:
                await self._settled
            finally:
                self._settled = None
        self.raise_failures()

    async def wait_started(self) -> None:
        """Wait until no run of this batch is queued for a slot (all have started)."""
        if self._queued:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._started
            finally:
                self._started = None

    def raise_failures(self) -> None:
        if self._failures:
            first, *others = self._failures
            self._failures.clear()
            if isinstance(first, EventHandlerError):
                first.others = [other for other in others if isinstance(other, EventHandlerError)]
            raise first

    async def drain(self) -> None:
        """Let every run finish within the dispatcher's ``drain_timeout``, then cancel what is left.

        Used when nobody waits for the outcome any more (the consumer went away, or the request
        failed): failures and abandoned runs are logged, never silently dropped.
        """
        interrupted = False
        try:
            if not self.settled:
                self._settled = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait((self._settled,), timeout=self._dispatcher.drain_timeout)
                finally:
                    self._settled = None
        except BaseException:
            interrupted = True
            raise
        finally:
            # Reached on a normal drain, a drain timeout, and a cancellation of the drain itself.
            if not self.settled:
                await self._abandon(
                    "the stream's drain was interrupted"
                    if interrupted
                    else f"the stream's drain timeout ({self._dispatcher.drain_timeout:g} s) ran out"
                )
            for failure in self._failures:
                logger.error("event handling failed after the stream ended: %s", failure, exc_info=failure)
            self._failures.clear()

    async def _abandon(self, reason: str) -> None:
        self._abandoning = reason
        for ticket, run in self._queued.items():
            ticket.cancel()
            logger.error(
                "%s for %s was never started: %s", run.target_name, type(run.event).__qualname__, reason
            )
        self._queued.clear()
        running = dict(self._running)
        for task, run in running.items():
            task.cancel()
            logger.error("%s for %s was cancelled: %s", run.target_name, type(run.event).__qualname__, reason)
        if running:
            await asyncio.wait(running)
