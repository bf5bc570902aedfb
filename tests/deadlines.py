"""Deadlines that expire while the handler is provably parked, on a machine of any speed.

A test of "a deadline ends a call" wants the deadline to pass while the server's handler waits on
something that never happens. A fixed short deadline cannot promise that: on a busy machine it may
pass before the call reaches the handler, and the test then proves nothing (or fails). So each test
runs its attempt with a short deadline first and, if the handler was not yet parked when the deadline
passed, again with a four times longer one: the first attempt that finds the handler parked is the one
that is checked. The durations are never asserted; the last one is only a guard against a hang.
"""

from __future__ import annotations

import typing

import pytest

DEADLINES = (0.25, 1.0, 4.0, 16.0)


async def parked_within(attempt: typing.Callable[[float], typing.Awaitable[bool]]) -> float:
    """Calls ``attempt(deadline)`` with growing deadlines until it returns True; that deadline.

    ``attempt`` returns whether the handler had parked before its deadline passed; it checks the
    outcome of its call itself (and fails the test when the outcome is wrong).
    """
    for deadline in DEADLINES:
        if await attempt(deadline):
            return deadline
    pytest.fail(f"the handler never parked within a deadline of {DEADLINES[-1]} s")
