"""Event processing: who handles an event, and the batch of runs a stream owns.

An :class:`EventDispatcher` belongs to one mediator: it knows the event map, the broker, the
container and the mediator-wide :class:`ConcurrencyLimiter`. Each request or stream opens an
:class:`EventBatch`, which owns every run it starts (one task per event-handler run; on Python 3.12+
an eager task, so a handler that never suspends costs no loop iteration) until the run ends; the
stream does not end, normally or not, before its batch has settled or been drained.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
import typing

from mediator._handlers import EventHandler, take_events
from mediator._limiter import ConcurrencyLimiter, Ticket
from mediator._maps import EventMap
from mediator._messages import Event, NotificationEvent
from mediator._options import EventProcessing
from mediator.behaviours import wrap_event_run
from mediator.container import DirectFactory, Resolver, needs_await
from mediator.exceptions import (
    EventCascadeTooDeep,
    EventHandlerError,
    EventHandlerTimeout,
    EventHandlingError,
    UnitOfWorkError,
)
from mediator.message_brokers.protocol import Message, MessageBroker, broker_name
from mediator.observe import MediatorObserver, NullObserver, Outcome
from mediator.unit_of_work import UnitOfWork, UnitOfWorkFactory, _current

__all__ = ["EventBatch", "EventDispatcher"]

logger = logging.getLogger("mediator")

_now = time.perf_counter

Emitted: typing.TypeAlias = typing.Sequence[Event]


if sys.version_info >= (3, 12):

    def _start_task(
        coro: typing.Coroutine[typing.Any, typing.Any, None],
        context: contextvars.Context | None,
        loop: asyncio.AbstractEventLoop,
    ) -> asyncio.Task[None]:
        # An eager task runs the handler at once, up to its first real suspension, with
        # current_task() set to the new task; a no-op handler is done before this returns.
        return asyncio.Task(coro, loop=loop, eager_start=True, context=context)

else:  # pragma: no cover - exercised on 3.11 only

    def _start_task(
        coro: typing.Coroutine[typing.Any, typing.Any, None],
        context: contextvars.Context | None,
        loop: asyncio.AbstractEventLoop,
    ) -> asyncio.Task[None]:
        return loop.create_task(coro, context=context)


class _Target:
    """Where an event goes (an event handler type, or the broker), ready to run: ``run(event)``."""

    __slots__ = ("build", "handler_type", "name", "run", "timeout")

    def __init__(
        self,
        name: str,
        run: typing.Callable[[Event], typing.Coroutine[typing.Any, typing.Any, Emitted]],
        build: DirectFactory[EventHandler[typing.Any]] | None = None,
        timeout: float | None = None,
        handler_type: type = object,
    ):
        self.name = name
        self.run = run
        self.build = build
        """Set when the handler is built by a direct call (the instance, or an awaitable of it: see
        :meth:`Resolver.direct_factory`) and nothing wraps its run: the batch then runs it in its
        own task's coroutine, without the container's coroutine and one coroutine fewer per event."""
        self.handler_type = handler_type
        """What ``build`` builds (an instance of exactly it needs no check); ``object`` without ``build``."""
        self.timeout = timeout
        """``event_handler_timeout`` when the batch bounds the run itself (see :meth:`EventBatch._start`);
        None when nothing bounds it, or when a wrapper does (inside behaviours: per attempt)."""


async def _nothing(event: Event) -> Emitted:  # pragma: no cover - a commit is never run as a target
    return ()


_COMMIT = _Target("the unit of work's commit", _nothing)
"""What a commit is called where runs are named (the batch owns a commit task like a run)."""


class _ItemUnit:
    """The unit of work of one item's events, and the runs of theirs not yet ended."""

    __slots__ = ("event", "failed", "pending", "runs", "unit")

    def __init__(self, unit: UnitOfWork, event: Event) -> None:
        self.unit = unit
        self.event = event  # the item's first event: what a commit failure names
        self.pending = 0  # runs submitted and not ended, plus one while a submit is under way
        self.runs = 0
        self.failed = False


class EventDispatcher:
    """The event side of one mediator; shared by all its streams."""

    def __init__(
        self,
        *,
        resolver: Resolver,
        event_map: EventMap,
        broker: MessageBroker,
        options: EventProcessing,
    ) -> None:
        self.resolver = resolver
        self.event_map = event_map
        self.broker = broker
        # Sequential handling (the spec's concurrent_event_handle_enable=False) is one run at a time
        # per stream; the ceiling still bounds the mediator as a whole.
        self.limiter = ConcurrencyLimiter(options.max_concurrent_event_handlers, options.per_stream)
        self.event_handler_timeout = options.event_handler_timeout
        self.drain_timeout = options.drain_timeout
        self.max_cascade_depth = options.max_event_cascade_depth
        self.units: UnitOfWorkFactory | None = options.unit_of_work
        self._behaviours = options.event_handler_behaviours
        self.draining: dict[EventBatch, asyncio.Task[typing.Any] | None] = {}
        """Batches whose stream ended early and that are still finishing their runs, with the task
        doing it (see :meth:`EventBatch.drain`)."""
        self.events_abandoned = 0
        """Event-handler runs given up (never started, or cancelled) by drains: each one was logged."""
        self._targets: dict[type[Event], tuple[_Target, ...]] = {}
        self._targets_version = -1
        self._handler_targets: dict[type[EventHandler[typing.Any]], _Target] = {}
        self._broker_target = self._behaved(self._bounded_target(_Target(broker_name(broker), self._publish)))

    def abandon_drains(self, reason: str) -> int:
        """Give up every drain still going: their remaining runs are cancelled or never started,
        each logged with its event; returns how many drains there were."""
        draining = list(self.draining.items())
        for batch, task in draining:
            batch.abandon_reason = reason
            if task is not None:
                task.cancel()  # the drain ends in its own task, where the stream's context is
            else:
                batch.give_up(reason)
        return len(draining)

    def targets(self, event_type: type[Event]) -> tuple[_Target, ...]:
        """The handlers bound to ``event_type``, then the broker if it is a notification."""
        if self._targets_version != self.event_map.version:
            # A handler bound after the mediator was first used must not be missed.
            self._targets.clear()
            self._targets_version = self.event_map.version
        found = self._targets.get(event_type)
        if found is None:
            found = tuple(self._handler_target(h) for h in self.event_map.handlers_for(event_type))
            if issubclass(event_type, NotificationEvent):
                found += (self._broker_target,)
            self._targets[event_type] = found
        return found

    def _handler_target(self, handler_type: type[EventHandler[typing.Any]]) -> _Target:
        target = self._handler_targets.get(handler_type)
        if target is None:
            build = self.resolver.direct_factory(handler_type)
            target = _Target(
                handler_type.__qualname__, self._runner(handler_type, build), build, handler_type=handler_type
            )
            target = self._handler_targets[handler_type] = self._behaved(self._bounded_target(target))
        return target

    def _runner(
        self,
        handler_type: type[EventHandler[typing.Any]],
        build: DirectFactory[EventHandler[typing.Any]] | None,
    ) -> typing.Callable[[Event], typing.Coroutine[typing.Any, typing.Any, Emitted]]:
        """``run(event)`` for a handler type: what runs under a timeout or an observer's scope (the
        plain case is inlined in :meth:`EventBatch._execute`)."""
        if build is None:
            resolve = self.resolver.resolve

            async def run_resolved(event: Event) -> Emitted:
                return await _handle(await resolve(handler_type), event)

            return run_resolved

        async def run_built(event: Event) -> Emitted:
            handler = build()
            if needs_await(handler, handler_type):
                handler = await typing.cast("typing.Awaitable[EventHandler[typing.Any]]", handler)
            return await _handle(typing.cast("EventHandler[typing.Any]", handler), event)

        return run_built

    async def _publish(self, event: Event) -> Emitted:
        # A quoted cast: subscripting the pydantic generic at run time cost ~7 µs per notification.
        notification = typing.cast("NotificationEvent[typing.Any]", event)
        await self.broker.send_message(Message.from_event(notification))
        return ()

    def _behaved(self, target: _Target) -> _Target:
        """``target`` inside the event-handler behaviours, if there are any (else ``target`` itself)."""
        if not self._behaviours:
            return target
        return _Target(target.name, wrap_event_run(self._behaviours, target.name, target.run))

    def _bounded_target(self, target: _Target) -> _Target:
        """``target`` bounded by ``event_handler_timeout``: by the batch, which arms a timer only for
        a run that suspends (most never do: no timer, no wrapper); inside behaviours by a wrapper,
        so that each attempt of a retrying behaviour gets the whole timeout."""
        seconds = self.event_handler_timeout
        if seconds is None:
            return target
        if not self._behaviours:
            return _Target(target.name, target.run, target.build, seconds, target.handler_type)
        run, name = target.run, target.name

        async def bounded(event: Event) -> Emitted:
            # asyncio.timeout turns its own cancellation into a TimeoutError raised by the `async with`
            # itself, so that is where ours is told apart from a TimeoutError the handler raised.
            deadline = asyncio.timeout(seconds)
            try:
                async with deadline:
                    return await run(event)
            except TimeoutError:
                if deadline.expired():
                    raise EventHandlerTimeout(event, name, seconds) from None
                raise

        return _Target(target.name, bounded)


def _identify(event: Event) -> str:
    """An event as a log line names it: a notification by its id, a domain event by its fields."""
    event_id = getattr(event, "event_id", None)
    if event_id is not None:
        return f"{type(event).__qualname__} {event_id}"
    fields = repr(event)
    return fields if len(fields) <= 300 else f"{fields[:297]}..."


async def _handle(handler: EventHandler[typing.Any], event: Event) -> Emitted:
    await handler.handle(event)
    return take_events(handler)


class EventBatch:
    """The event-handler runs of one stream (or one request): started, owned, awaited.

    ``submit`` never blocks: a run starts at once when the mediator has a free slot, otherwise it
    queues for one (first come, first served across the mediator's streams). Failures are collected
    and raised by ``wait`` once every run has ended, so a failing handler never cuts its siblings short.
    Each run does its own bookkeeping as it ends, inside its task: the stream waiting for the batch is
    woken in the same loop iteration.

    With an ``observer`` (:mod:`mediator.observe`), every run is reported, wrapped in the observer's
    scope, and started in a copy of the context the batch was created in (the stream's), even when
    another stream's run hands it the slot, so that the stream's tracing span is its parent. Without
    one, none of that costs anything but an ``is None`` test.

    ``running``, ``queued`` and ``failures`` are plain attributes, read by the stream after every item.
    """

    __slots__ = (
        "_context",
        "_deadlines",
        "_given_up",
        "_loop",
        "_scoped",
        "_settled",
        "_started",
        "_timed_out",
        "_timers",
        "abandon_reason",
        "abandoning",
        "dispatcher",
        "failures",
        "observer",
        "queued",
        "running",
        "share",
    )

    def __init__(self, dispatcher: EventDispatcher, observer: MediatorObserver | None = None) -> None:
        self.dispatcher = dispatcher
        self.share = dispatcher.limiter.share()
        self.running: dict[asyncio.Task[None], tuple[Event, _Target]] = {}
        self.queued: dict[Ticket, tuple[Event, _Target, int, int | None, _ItemUnit | None]] = {}
        self.failures: list[EventHandlingError] = []
        self._settled: asyncio.Future[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self.abandoning = ""  # why the batch gave up on its runs, once it has
        self.abandon_reason = ""  # why someone else (a server shutting down) ended its drain
        self._deadlines: dict[asyncio.Task[None], float] | None = None  # while draining
        self._given_up: set[asyncio.Task[None]] = set()  # runs cancelled by the drain's bound
        self._timers: dict[asyncio.Task[None], asyncio.TimerHandle] = {}  # runs past event_handler_timeout
        self._timed_out: set[asyncio.Task[None]] = set()  # runs their timer cancelled
        self.observer = observer
        self._loop = asyncio.get_running_loop()  # a batch lives inside one request's or stream's run
        self._context = contextvars.copy_context() if observer is not None else None
        # An observer that keeps NullObserver's scope (metrics only) saves entering one per run.
        self._scoped = observer is not None and (
            getattr(type(observer), "event_handler_scope", None) is not NullObserver.event_handler_scope
        )

    @property
    def settled(self) -> bool:
        """No run is going or queued."""
        return not self.running and not self.queued

    def submit(
        self, events: Emitted, depth: int = 0, item: int | None = None, unit: _ItemUnit | None = None
    ) -> None:
        """Start (or queue) a run for every target of every event, in emission order.

        ``item`` is the index of the stream item the events came with (for the observer). Events
        submitted at depth 0 open a unit of work when the mediator has a factory; the events their
        handlers emit (``unit``) join it.
        """
        if self.observer is not None:
            self.observer.events_emitted(events)
        dispatcher = self.dispatcher
        if unit is None and depth == 0 and dispatcher.units is not None and events:
            unit = _ItemUnit(dispatcher.units.begin(), events[0])
        if unit is not None:
            unit.pending += 1  # held until every run of these events is submitted
        share = self.share
        for event in events:
            if depth > dispatcher.max_cascade_depth:
                self.failures.append(EventCascadeTooDeep(event, depth))
                if unit is not None:
                    unit.failed = True
                continue
            for target in dispatcher.targets(type(event)):
                if unit is not None:
                    unit.pending += 1
                    unit.runs += 1
                if share.try_acquire():
                    self._start(event, target, depth, item, unit)
                else:
                    # Registered before the ticket can be handed a slot (enqueue never starts one).
                    ticket = share.enqueue(self._start_queued)
                    self.queued[ticket] = (event, target, depth, item, unit)
        if unit is not None:
            self._run_ended(unit, ok=True)

    def _run_ended(self, unit: _ItemUnit, *, ok: bool) -> None:
        """One run of ``unit`` (or the submit holding it) ended; the last one commits or rolls back."""
        if not ok:
            unit.failed = True
        unit.pending -= 1
        if unit.pending:
            return
        if unit.failed or self.abandoning or not unit.runs:
            unit.unit.rollback()
            return
        task = _start_task(self._commit(unit), None, self._loop)
        if not task.done():
            self._own(task, unit.event, _COMMIT)

    async def _commit(self, unit: _ItemUnit) -> None:
        try:
            await unit.unit.commit()
        except asyncio.CancelledError:
            if not self.abandoning and asyncio.current_task() not in self._given_up:
                self.failures.append(UnitOfWorkError(unit.event, "cancelled"))
            raise
        except Exception as failure:
            error = UnitOfWorkError(unit.event, f"{type(failure).__name__}: {failure}")
            error.__cause__ = failure
            self.failures.append(error)
        finally:
            self.running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if self._settled is not None or self._started is not None:
                self._wake()

    def _start_queued(self, ticket: Ticket) -> None:
        self._start(*self.queued.pop(ticket))
        if not self.queued:
            # The slot may have come from another stream's run: nothing of this batch ends here
            # to call _wake(), yet a stream waiting in wait_started() may go on now.
            self._wake()

    def _start(
        self, event: Event, target: _Target, depth: int, item: int | None, unit: _ItemUnit | None
    ) -> None:
        context = self._context
        timeout = target.timeout
        loop = self._loop
        started = loop.time() if timeout is not None else 0.0
        task = _start_task(
            self._execute(event, target, depth, item, unit), None if context is None else context.copy(), loop
        )
        if not task.done():
            self._own(task, event, target)
            if timeout is not None:
                # Armed only now: a run that never suspends has ended inside _start_task (an eager
                # task) and costs no timer. The bound still counts from the run's start.
                self._timers[task] = loop.call_at(started + timeout, self._time_out, task)

    def _time_out(self, task: asyncio.Task[None]) -> None:
        self._timers.pop(task, None)
        if not task.done():
            self._timed_out.add(task)
            task.cancel()

    def _own(self, task: asyncio.Task[None], event: Event, target: _Target) -> None:
        self.running[task] = (event, target)
        deadlines = self._deadlines
        if deadlines is not None:  # draining: each run gets the drain's bound from its own start
            deadlines[task] = asyncio.get_running_loop().time() + self.dispatcher.drain_timeout
            self._wake_drain()

    async def _execute(
        self, event: Event, target: _Target, depth: int, item: int | None, unit: _ItemUnit | None
    ) -> None:
        observer = self.observer
        outcome: Outcome = "ok"
        error: BaseException | None = None
        started = _now() if observer is not None else 0.0
        if unit is not None:
            _current.set(unit.unit)  # the task's own context: the run (and its handler) sees its unit
        try:
            build = target.build
            if self._scoped:
                emitted = await self._run_in_scope(event, target, item)
            elif build is not None:  # _handle(build(), event), inlined: one coroutine fewer per event
                handler: typing.Any = build()  # the handler, or an awaitable of it (checked below)
                if type(handler) is not target.handler_type and needs_await(handler, target.handler_type):
                    handler = await handler  # a container that had to await a dependency
                await handler.handle(event)
                emitted = take_events(handler)
            else:
                emitted = await target.run(event)
        except asyncio.CancelledError:
            task = typing.cast("asyncio.Task[None]", asyncio.current_task())
            if task in self._timed_out and task not in self._given_up and not self.abandoning:
                # Our timer's cancellation, not the stream's: the run failed, the task goes on.
                self._timed_out.discard(task)
                task.uncancel()
                timed_out = EventHandlerTimeout(event, target.name, target.timeout or 0.0)
                self.failures.append(timed_out)
                outcome, error = "timeout", timed_out
            else:
                outcome = "cancelled"
                if not self.abandoning and task not in self._given_up:
                    self.failures.append(EventHandlerError(event, target.name, "cancelled"))
                raise
        except Exception as failure:
            outcome, error = self._failed(failure, event, target.name)
        else:
            if emitted and self.abandoning:
                logger.error(
                    "%d events emitted by %s were not handled: %s", len(emitted), target.name, self.abandoning
                )
            elif emitted:
                self.submit(emitted, depth + 1, item, unit)
        finally:
            # A run that ended inside its eager start has no timer and is not in ``running`` yet
            # (both come once _start_task returns): most runs, so both are looked at only if needed.
            if self._timers or self._timed_out:
                self._disarm(typing.cast("asyncio.Task[None]", asyncio.current_task()))
            if observer is not None:
                observer.event_handler_ended(event, target.name, outcome, _now() - started, error)
            if self.running:
                self.running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self.share.release()
            if unit is not None:
                self._run_ended(unit, ok=outcome == "ok")
            if self._settled is not None or self._started is not None:
                self._wake()

    def _disarm(self, task: asyncio.Task[None]) -> None:
        timer = self._timers.pop(task, None)
        if timer is not None:
            timer.cancel()
        if task in self._timed_out:  # the handler swallowed our cancellation: its run ended anyway
            self._timed_out.discard(task)
            task.uncancel()

    async def _run_in_scope(self, event: Event, target: _Target, item: int | None) -> Emitted:
        assert self.observer is not None
        with self.observer.event_handler_scope(event, target.name, item):
            return await target.run(event)

    def _failed(self, failure: Exception, event: Event, name: str) -> tuple[Outcome, BaseException]:
        """Record a run's failure; its outcome and the error the observer is told about."""
        wrapped = self._wrap(failure, event, name)
        self.failures.append(wrapped)
        if isinstance(wrapped, EventHandlerTimeout):
            return "timeout", wrapped
        return "error", failure

    def _wrap(self, error: Exception, event: Event, name: str) -> EventHandlingError:
        if isinstance(error, EventHandlerTimeout):
            return error
        wrapped = EventHandlerError(event, name, f"{type(error).__name__}: {error}")
        wrapped.__cause__ = error
        return wrapped

    def _wake(self) -> None:
        if self.queued:
            return
        started = self._started
        if started is not None and not started.done():
            started.set_result(None)
        if self.running:
            return
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)

    async def wait(self) -> None:
        """Wait until every run has ended, then raise the first failure (others on ``.others``)."""
        if self.running or self.queued:
            self._settled = asyncio.get_running_loop().create_future()
            try:
                await self._settled
            finally:
                self._settled = None
        self.raise_failures()

    async def wait_started(self) -> None:
        """Wait until no run of this batch is queued for a slot (all have started)."""
        if self.queued:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._started
            finally:
                self._started = None

    def raise_failures(self) -> None:
        if self.failures:
            first, *others = self.failures
            self.failures.clear()
            if isinstance(first, EventHandlerError):
                first.others = [other for other in others if isinstance(other, EventHandlerError)]
            raise first

    def _wake_drain(self) -> None:
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)  # the drain recomputes its next deadline

    async def drain(self) -> None:
        """Let every run finish, then log what failed; used when nobody waits for the outcome any
        more (the consumer went away, or the request failed).

        The dispatcher's ``drain_timeout`` bounds *running* work: each run may go on for that long
        from the start of the drain, or from its own start if it was queued for a slot. Queued runs
        are never dropped for lack of time: they start as slots free (slots held by other streams
        are bounded by their own drains and timeouts). A run cut short by the bound, and every run
        given up when the drain itself is cancelled (:meth:`EventDispatcher.abandon_drains`), is
        logged with its event, one line each, and counted: never silently dropped.
        """
        dispatcher = self.dispatcher
        dispatcher.draining[self] = asyncio.current_task()
        try:
            if not self.settled:
                await self._drain_bounded()
        finally:
            # Reached on a normal drain and on a cancellation of the drain itself.
            del dispatcher.draining[self]
            if not self.settled:
                await self._abandon(self.abandon_reason or "the stream's drain was interrupted")
            for failure in self.failures:
                logger.error("event handling failed after the stream ended: %s", failure, exc_info=failure)
            self.failures.clear()

    async def _drain_bounded(self) -> None:
        loop = asyncio.get_running_loop()
        bound = self.dispatcher.drain_timeout
        first_deadline = loop.time() + bound
        self._deadlines = deadlines = dict.fromkeys(self.running, first_deadline)
        try:
            while not self.settled:
                timeout = None  # only queued runs: they wait for a slot
                if self.running:
                    timeout = max(0.0, min(deadlines[task] for task in self.running) - loop.time())
                self._settled = loop.create_future()
                try:
                    await asyncio.wait((self._settled,), timeout=timeout)
                finally:
                    self._settled = None
                now = loop.time()
                overdue = [task for task in self.running if deadlines[task] <= now]
                if overdue:
                    reason = f"it ran past the stream's drain timeout ({bound:g} s)"
                    for task in overdue:
                        self._given_up.add(task)
                        event, target = self.running[task]
                        self._report_abandoned(event, target, "was cancelled", reason)
                        task.cancel()
                    await asyncio.wait(overdue)
        finally:
            self._deadlines = None

    def _report_abandoned(self, event: Event, target: _Target, what: str, reason: str) -> None:
        self.dispatcher.events_abandoned += 1
        logger.error(
            "%s for %s %s: %s",
            target.name,
            _identify(event),
            what,
            reason,
            extra={"event": type(event).__qualname__, "handler": target.name},
        )

    def give_up(self, reason: str) -> None:
        """Stop every run now (queued ones never start, running ones are cancelled), each logged."""
        self.abandoning = reason
        queued = list(self.queued.items())
        self.queued.clear()
        for ticket, (event, target, _, _, unit) in queued:
            ticket.cancel()
            self._report_abandoned(event, target, "was never started", reason)
            if unit is not None:
                self._run_ended(unit, ok=False)
        for task, (event, target) in self.running.items():
            task.cancel()
            self._report_abandoned(event, target, "was cancelled", reason)

    async def _abandon(self, reason: str) -> None:
        running = list(self.running)
        self.give_up(reason)
        if running:
            await asyncio.wait(running)
