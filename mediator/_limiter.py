"""A bound on how many event-handler runs a mediator has going at once, fair between its streams.

The mediator-wide ``limit`` is the ceiling (the spec's ``max_concurrent_event_handlers``). Each stream
(or request) holds a :class:`Share` of it: at most ``per_share`` slots at once (all of them unless
told otherwise, as the spec has it; a service sets less, so that one stream's slow or hanging
handlers never hold every slot). Runs that find no slot queue in their share; a slot
that frees goes to the shares that wait, in turn (round robin), first come first served within a share.

Unlike ``asyncio.Semaphore`` it is not tied to an event loop (a mediator may outlive one, e.g. a
``functools.cache``d factory used by several ``asyncio.run`` calls), and waiting is a callback, so a
run that gets a slot starts from ``release()`` without an extra task or loop iteration.
"""

from __future__ import annotations

import collections
import typing

__all__ = ["ConcurrencyLimiter", "Share", "Ticket"]


class Ticket:
    """A place in a share's queue for a slot; ``cancel()`` gives it up."""

    __slots__ = ("_start", "cancelled")

    def __init__(self, start: typing.Callable[[Ticket], None]) -> None:
        self._start = start
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ConcurrencyLimiter:
    """At most ``limit`` holders at once, at most ``per_share`` of them in any one :class:`Share`."""

    __slots__ = ("_handing_out", "_turns", "in_use", "limit", "peak", "per_share")

    def __init__(self, limit: int, per_share: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the limit of concurrent event handlers must be at least 1, not {limit}")
        per_share = limit if per_share is None else per_share
        if not 1 <= per_share <= limit:
            raise ValueError(
                f"the per-stream limit of concurrent event handlers must be between 1 and {limit}, "
                f"not {per_share}"
            )
        self.limit = limit
        self.per_share = per_share
        self.in_use = 0
        self.peak = 0
        self._turns: collections.deque[Share] = collections.deque()  # shares waiting, in turn order
        self._handing_out = False

    def share(self) -> Share:
        """A new share (one per stream or request)."""
        return Share(self)

    def _hand_out(self) -> None:
        if self._handing_out:
            # A run started below finished at once and released its slot: the loop below hands it
            # on, iteratively rather than by recursion.
            return
        self._handing_out = True
        try:
            turns = self._turns
            while turns and self.in_use < self.limit:
                share = turns.popleft()
                share.in_turn = False
                ticket = share.next_ticket()
                if ticket is None:
                    continue
                share.in_use += 1
                self.in_use += 1
                if self.in_use > self.peak:
                    self.peak = self.in_use
                if share.pending and share.in_use < self.per_share:
                    share.in_turn = True
                    turns.append(share)  # its next run waits for the others' turns
                ticket._start(ticket)
        finally:
            self._handing_out = False


class Share:
    """One stream's part of a :class:`ConcurrencyLimiter`: its slots in use and its queued runs."""

    __slots__ = ("in_turn", "in_use", "limiter", "pending")

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self.limiter = limiter
        self.in_use = 0
        self.pending: collections.deque[Ticket] = collections.deque()
        self.in_turn = False

    def try_acquire(self) -> bool:
        """Take a slot if one is free, this share has room, and nobody waits ahead."""
        limiter = self.limiter
        if (
            limiter.in_use < limiter.limit
            and self.in_use < limiter.per_share
            and not self.pending
            and not limiter._turns
        ):
            self.in_use += 1
            limiter.in_use += 1
            if limiter.in_use > limiter.peak:
                limiter.peak = limiter.in_use
            return True
        return False

    def enqueue(self, start: typing.Callable[[Ticket], None]) -> Ticket:
        """Call ``start(ticket)``, holding a slot, as soon as one is handed to this ticket."""
        ticket = Ticket(start)
        self.pending.append(ticket)
        self._take_turn()
        return ticket

    def release(self) -> None:
        """Give a slot back; it goes to the next share in turn that has a run waiting."""
        self.in_use -= 1
        limiter = self.limiter
        limiter.in_use -= 1
        self._take_turn()
        if limiter._turns:
            limiter._hand_out()

    def next_ticket(self) -> Ticket | None:
        """The first live ticket of this share, taken off its queue (cancelled ones are dropped)."""
        pending = self.pending
        while pending:
            ticket = pending.popleft()
            if not ticket.cancelled:
                return ticket
        return None

    def _take_turn(self) -> None:
        # Enqueueing never starts a run itself: a ticket is taken only when no slot was free to
        # this share, and a share with room and runs waiting is always in turn (``_hand_out``).
        if self.pending and not self.in_turn and self.in_use < self.limiter.per_share:
            self.in_turn = True
            self.limiter._turns.append(self)
