"""``ConcurrencyLimiter``: a loop-free bound, fair between shares, with callbacks for waiting runs."""

import pytest

from mediator._limiter import ConcurrencyLimiter, Ticket


def test_slots_are_taken_up_to_the_limit() -> None:
    limiter = ConcurrencyLimiter(2)  # one share may take every slot unless told otherwise
    share = limiter.share()

    assert share.try_acquire()
    assert share.try_acquire()
    assert not share.try_acquire()
    assert not limiter.share().try_acquire()
    assert (limiter.in_use, limiter.peak) == (2, 2)


def test_one_share_takes_at_most_its_part_and_leaves_the_rest_to_others() -> None:
    limiter = ConcurrencyLimiter(10, per_share=5)
    greedy, other = limiter.share(), limiter.share()

    assert [greedy.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    assert [other.try_acquire() for _ in range(5)] == [True] * 5
    assert limiter.in_use == 10


def test_released_slots_go_to_queued_tickets_first_come_first_served() -> None:
    limiter = ConcurrencyLimiter(1)
    share = limiter.share()
    started: list[str] = []
    assert share.try_acquire()
    for name in ("a", "b", "c"):
        # mypy cannot infer a lambda with a default argument (it binds the loop variable).
        share.enqueue(lambda ticket, name=name: started.append(name))  # type: ignore[misc]

    assert not share.try_acquire()  # a free slot would go to the queue first anyway
    share.release()
    assert started == ["a"]
    assert limiter.in_use == 1
    share.release()
    share.release()
    assert started == ["a", "b", "c"]
    share.release()
    assert limiter.in_use == 0
    assert limiter.peak == 1
    assert share.try_acquire()


def test_freed_slots_go_to_waiting_shares_in_turn() -> None:
    # One share queued many runs before two others queued one each: the others do not wait
    # behind all of them.
    limiter = ConcurrencyLimiter(2, per_share=2)
    holder = limiter.share()
    holder.try_acquire()
    holder.try_acquire()
    started: list[str] = []
    many, one, two = limiter.share(), limiter.share(), limiter.share()
    for n in range(4):
        # mypy cannot infer a lambda with a default argument (it binds the loop variable).
        many.enqueue(lambda ticket, n=n: started.append(f"many{n}"))  # type: ignore[misc]
    one.enqueue(lambda ticket: started.append("one"))
    two.enqueue(lambda ticket: started.append("two"))

    holder.release()
    holder.release()
    many.release()
    one.release()
    many.release()

    assert started == ["many0", "one", "two", "many1", "many2"]


def test_a_share_at_its_part_is_skipped_until_one_of_its_own_runs_ends() -> None:
    limiter = ConcurrencyLimiter(4, per_share=2)
    full, other = limiter.share(), limiter.share()
    full.try_acquire()
    full.try_acquire()
    started: list[str] = []
    full.enqueue(lambda ticket: started.append("full"))
    assert started == []  # two free slots, but not for this share
    assert other.try_acquire()
    full.release()
    assert started == ["full"]
    assert (full.in_use, limiter.in_use) == (2, 3)


def test_a_new_comer_does_not_jump_the_queue() -> None:
    limiter = ConcurrencyLimiter(1)
    share = limiter.share()
    share.try_acquire()
    started: list[Ticket] = []
    limiter.share().enqueue(started.append)

    assert not limiter.share().try_acquire()
    share.release()
    assert len(started) == 1
    assert not share.try_acquire()


def test_cancelled_tickets_are_skipped() -> None:
    limiter = ConcurrencyLimiter(1)
    share = limiter.share()
    started: list[str] = []
    share.try_acquire()
    first = share.enqueue(lambda ticket: started.append("first"))
    share.enqueue(lambda ticket: started.append("second"))
    first.cancel()

    share.release()

    assert first.cancelled
    assert started == ["second"]
    assert limiter.in_use == 1


def test_cancelled_tickets_do_not_hold_slots() -> None:
    limiter = ConcurrencyLimiter(2, per_share=2)
    share = limiter.share()
    share.try_acquire()
    share.try_acquire()
    tickets = [share.enqueue(lambda ticket: pytest.fail("a cancelled ticket started")) for _ in range(3)]
    for ticket in tickets:
        ticket.cancel()

    share.release()
    share.release()

    assert limiter.in_use == 0
    assert share.try_acquire()


def test_ten_thousand_runs_that_finish_at_once_hand_on_slots_without_recursion() -> None:
    limiter = ConcurrencyLimiter(1)
    share = limiter.share()
    order: list[int] = []
    share.try_acquire()

    def finishes_at_once(ticket: Ticket, n: int) -> None:
        order.append(n)
        share.release()  # a run that ends as soon as it starts

    for n in range(10_000):
        # mypy cannot infer a lambda with a default argument (it binds the loop variable).
        share.enqueue(lambda ticket, n=n: finishes_at_once(ticket, n))  # type: ignore[misc]
    share.release()

    assert order == list(range(10_000))
    assert limiter.in_use == 0
    assert limiter.peak == 1


def test_peak_records_the_most_holders_at_once() -> None:
    limiter = ConcurrencyLimiter(3, per_share=3)
    share = limiter.share()
    share.try_acquire()
    share.try_acquire()
    share.release()
    share.try_acquire()
    assert limiter.peak == 2
    share.try_acquire()

    assert limiter.in_use == 3
    assert limiter.peak == 3


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimiter(limit)


@pytest.mark.parametrize("per_share", [0, 4])
def test_a_share_outside_one_to_the_limit_is_refused(per_share: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 3"):
        ConcurrencyLimiter(3, per_share=per_share)
