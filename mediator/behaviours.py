"""Behaviours: code of your own around every stream, request and event-handler run of a mediator.

As MediatR's pipeline behaviours, each one gets the message and a ``call_next`` that runs the rest of
the pipeline (the next behaviour, and last the handler itself). They are given per mediator and run in
the order given, the first outermost::

    orders = bootstrap.bootstrap_streaming(
        ...,
        behaviours=[Timed(), Validated()],                       # around every stream
        event_handler_behaviours=[RetryWithBackoff(attempts=3)],  # around every event-handler run
    )

A **stream behaviour** is called with the request and returns the stream of items its consumer gets;
``call_next()`` starts the handler's stream. Written as an async generator it sees every item on its
way out (and may transform, drop or add items), the handler's error (raised by its ``async for``),
the consumer going away (``GeneratorExit`` at its ``yield``; the mediator then closes the handler's
own stream too), and the end; it may call ``call_next()`` again to retry before it yielded anything,
or stop early by returning. The events the handler emitted are taken whenever an item comes out of
the pipeline, and at its end: an item a behaviour drops still has its events handled.

A **request behaviour** (``RequestMediator``) is ``async (request, call_next) -> response``.

An **event-handler behaviour** is ``async (event, handler_name, call_next) -> events`` around each run
of an event handler (and of the broker's send, ``handler_name`` being the broker's): ``call_next()``
builds a fresh handler, runs it under ``event_handler_timeout`` and returns the events it emitted,
which the behaviour returns in turn. :class:`RetryWithBackoff` is one.

With no behaviours, a mediator runs exactly the code it runs without this module: nothing is wrapped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import typing

from mediator._messages import Event, Request

__all__ = [
    "EventHandlerBehaviour",
    "NextEventRun",
    "NextRequest",
    "NextStream",
    "RequestBehaviour",
    "RetryWithBackoff",
    "StreamBehaviour",
]

logger = logging.getLogger("mediator.behaviours")

NextStream: typing.TypeAlias = typing.Callable[[], typing.AsyncIterator[typing.Any]]
NextRequest: typing.TypeAlias = typing.Callable[[], typing.Awaitable[typing.Any]]
NextEventRun: typing.TypeAlias = typing.Callable[[], typing.Awaitable[typing.Sequence[Event]]]


class StreamBehaviour(typing.Protocol):
    """Around every stream: ``(request, call_next) -> items`` (see the module docs)."""

    def __call__(self, request: Request, call_next: NextStream) -> typing.AsyncIterator[typing.Any]: ...


class RequestBehaviour(typing.Protocol):
    """Around every ``send``: ``async (request, call_next) -> response``."""

    def __call__(self, request: Request, call_next: NextRequest) -> typing.Awaitable[typing.Any]: ...


class EventHandlerBehaviour(typing.Protocol):
    """Around every event-handler run: ``async (event, handler_name, call_next) -> emitted events``."""

    def __call__(
        self, event: Event, handler: str, call_next: NextEventRun
    ) -> typing.Awaitable[typing.Sequence[Event]]: ...


def wrap_stream(
    behaviours: typing.Sequence[StreamBehaviour], request: Request, innermost: NextStream
) -> typing.AsyncIterator[typing.Any]:
    """The pipeline's stream: ``behaviours[0]`` outermost, ``innermost`` (the handler's) last."""
    call_next = innermost
    for behaviour in reversed(behaviours):
        call_next = _bind_stream(behaviour, request, call_next)
    return call_next()


def _bind_stream(behaviour: StreamBehaviour, request: Request, call_next: NextStream) -> NextStream:
    return lambda: behaviour(request, call_next)


def wrap_request(
    behaviours: typing.Sequence[RequestBehaviour], request: Request, innermost: NextRequest
) -> typing.Awaitable[typing.Any]:
    call_next = innermost
    for behaviour in reversed(behaviours):
        call_next = _bind_request(behaviour, request, call_next)
    return call_next()


def _bind_request(behaviour: RequestBehaviour, request: Request, call_next: NextRequest) -> NextRequest:
    return lambda: behaviour(request, call_next)


def wrap_event_run(
    behaviours: typing.Sequence[EventHandlerBehaviour],
    name: str,
    run: typing.Callable[[Event], typing.Awaitable[typing.Sequence[Event]]],
) -> typing.Callable[[Event], typing.Coroutine[typing.Any, typing.Any, typing.Sequence[Event]]]:
    """``run`` with ``behaviours`` around it, as the dispatcher calls a target: ``run(event)``."""

    async def behaved(event: Event) -> typing.Sequence[Event]:
        call_next: NextEventRun = lambda: run(event)  # noqa: E731 - rebound below, one per behaviour
        for behaviour in reversed(behaviours):
            call_next = _bind_event(behaviour, event, name, call_next)
        return await call_next()

    return behaved


def _bind_event(
    behaviour: EventHandlerBehaviour, event: Event, name: str, call_next: NextEventRun
) -> NextEventRun:
    return lambda: behaviour(event, name, call_next)


class RetryWithBackoff:
    """An event-handler behaviour: run again after a failure, waiting longer each time.

    :param attempts: runs in all (1 = no retry).
    :param backoff: seconds before the second run, doubled for each next one (jittered: x 0.5-1) ...
    :param max_backoff: ... up to this.
    :param retry_on: the exceptions worth another run; anything else fails at once. Cancellation is
        never retried.
    """

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        retry_on: tuple[type[Exception], ...] = (Exception,),
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {attempts}")
        if backoff < 0 or max_backoff < backoff:
            raise ValueError(f"need 0 <= backoff <= max_backoff, not {backoff} and {max_backoff}")
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_on = retry_on

    async def __call__(self, event: Event, handler: str, call_next: NextEventRun) -> typing.Sequence[Event]:
        attempt = 1
        while True:
            try:
                return await call_next()
            except self.retry_on as error:
                if attempt >= self.attempts:
                    raise
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1)
                logger.warning(
                    "%s failed handling %s (attempt %d of %d): %s; retrying in %.2f s",
                    handler,
                    type(event).__qualname__,
                    attempt,
                    self.attempts,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1
