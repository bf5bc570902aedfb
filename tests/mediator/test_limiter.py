"""``ConcurrencyLimiter``: a loop-free bound with a FIFO queue of callbacks."""

import pytest

from mediator._limiter import ConcurrencyLimiter, Ticket


def test_slots_are_taken_up_to_the_limit() -> None:
    limiter = ConcurrencyLimiter(2)

    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert (limiter.in_use, limiter.peak) == (2, 2)


def test_released_slots_go_to_queued_tickets_first_come_first_served() -> None:
    limiter = ConcurrencyLimiter(1)
    started: list[str] = []
    assert limiter.try_acquire()
    for name in ("a", "b", "c"):
        limiter.enqueue(lambda ticket, name=name: started.append(name))

    assert not limiter.try_acquire()  # a free slot would go to the queue first anyway
    limiter.release()
    assert started == ["a"]
    assert limiter.in_use == 1
    limiter.release()
    limiter.release()
    assert started == ["a", "b", "c"]
    limiter.release()
    assert limiter.in_use == 0
    assert limiter.peak == 1
    assert limiter.try_acquire()


def test_a_new_comer_does_not_jump_the_queue() -> None:
    limiter = ConcurrencyLimiter(1)
    limiter.try_acquire()
    started: list[Ticket] = []
    limiter.enqueue(started.append)

    assert not limiter.try_acquire()
    limiter.release()
    assert len(started) == 1
    assert not limiter.try_acquire()


def test_cancelled_tickets_are_skipped() -> None:
    limiter = ConcurrencyLimiter(1)
    started: list[str] = []
    limiter.try_acquire()
    first = limiter.enqueue(lambda ticket: started.append("first"))
    limiter.enqueue(lambda ticket: started.append("second"))
    first.cancel()

    limiter.release()

    assert first.cancelled
    assert started == ["second"]
    assert limiter.in_use == 1


def test_cancelled_tickets_do_not_hold_slots() -> None:
    limiter = ConcurrencyLimiter(2)
    limiter.try_acquire()
    limiter.try_acquire()
    tickets = [limiter.enqueue(lambda ticket: pytest.fail("a cancelled ticket started")) for _ in range(3)]
    for ticket in tickets:
        ticket.cancel()

    limiter.release()
    limiter.release()

    assert limiter.in_use == 0
    assert limiter.try_acquire()


def test_ten_thousand_runs_that_finish_at_once_hand_on_slots_without_recursion() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[int] = []
    limiter.try_acquire()

    def finishes_at_once(ticket: Ticket, n: int) -> None:
        order.append(n)
        limiter.release()  # a run that ends as soon as it starts

    for n in range(10_000):
        limiter.enqueue(lambda ticket, n=n: finishes_at_once(ticket, n))
    limiter.release()

    assert order == list(range(10_000))
    assert limiter.in_use == 0
    assert limiter.peak == 1


def test_peak_records_the_most_holders_at_once() -> None:
    limiter = ConcurrencyLimiter(3)
    limiter.try_acquire()
    limiter.try_acquire()
    limiter.release()
    limiter.try_acquire()
    assert limiter.peak == 2
    limiter.try_acquire()

    assert limiter.in_use == 3
    assert limiter.peak == 3


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimiter(limit)
