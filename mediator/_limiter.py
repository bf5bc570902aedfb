"""A bound on how many event-handler runs a mediator has going at once.

Unlike ``asyncio.Semaphore`` it is not tied to an event loop (a mediator may outlive one, e.g. a
``functools.cache``d factory used by several ``asyncio.run`` calls), and waiting is a callback, so a
run that gets a slot starts from ``release()`` without an extra task or loop iteration.
"""

from __future__ import annotations

import collections
import typing

__all__ = ["ConcurrencyLimiter", "Ticket"]


class Ticket:
    """A place in the queue for a slot; ``cancel()`` gives it up."""

    __slots__ = ("_start", "cancelled")

    def __init__(self, start: typing.Callable[[Ticket], None]) -> None:
        self._start = start
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ConcurrencyLimiter:
    """At most ``limit`` holders at once; the rest wait first come, first served."""

    __slots__ = ("_handing_out", "_waiting", "in_use", "limit", "peak")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the limit of concurrent event handlers must be at least 1, not {limit}")
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._waiting: collections.deque[Ticket] = collections.deque()
        self._handing_out = False

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued ahead."""
        if self.in_use < self.limit and not self._waiting:
            self.in_use += 1
            if self.in_use > self.peak:
                self.peak = self.in_use
            return True
        return False

    def enqueue(self, start: typing.Callable[[Ticket], None]) -> Ticket:
        """Call ``start(ticket)``, holding a slot, as soon as one is released to this ticket."""
        ticket = Ticket(start)
        self._waiting.append(ticket)
        return ticket

    def release(self) -> None:
        """Give a slot back; it passes straight to the first live ticket in the queue."""
        self.in_use -= 1
        if self._handing_out:
            # A run started below finished at once and released its slot: the loop below hands it
            # on, iteratively rather than by recursion.
            return
        self._handing_out = True
        try:
            while self._waiting and self.in_use < self.limit:
                ticket = self._waiting.popleft()
                if ticket.cancelled:
                    continue
                self.in_use += 1
                if self.in_use > self.peak:
                    self.peak = self.in_use
                ticket._start(ticket)
        finally:
            self._handing_out = False
