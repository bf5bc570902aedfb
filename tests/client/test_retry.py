"""Retries: only UNAVAILABLE, only before the first item, bounded, within the deadline."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from client import DeadlineExceeded, Internal, RetryPolicy, RillClient, RillError, Unavailable
from server import Settings, create_server
from tests.client.conftest import FAST_RETRY, FakeServers
from tests.client.fakes import FakeOrderService, fail, hang_after, stream
from tests.deadlines import parked_within

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class Retries:
    """Records what ``on_retry`` is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, grpc.StatusCode, float]] = []

    def __call__(self, attempt: int, error: RillError, delay: float) -> None:
        self.seen.append((attempt, error.code, delay))


async def test_unavailable_before_the_first_item_is_retried(fake_servers: FakeServers) -> None:
    fake = FakeOrderService(fail(UNAVAILABLE), stream(3))
    retries = Retries()
    address = await fake_servers.start(fake)
    async with (
        RillClient(address, retry=FAST_RETRY, on_retry=retries) as client,
        client.process_orders(["a", "b", "c"], request_id="req-retry") as results,
    ):
        received = [result.order_id async for result in results]

    assert received == ["a", "b", "c"]
    assert results.attempts == 2
    assert [call.outcome for call in fake.calls] == ["UNAVAILABLE", "ok"]
    assert [call.metadata["x-request-id"] for call in fake.calls] == ["req-retry", "req-retry"]
    assert [(attempt, code) for attempt, code, _ in retries.seen] == [(2, UNAVAILABLE)]
    assert 0 < retries.seen[0][2] <= FAST_RETRY.max_backoff * (1 + FAST_RETRY.jitter)


async def test_unavailable_after_items_is_not_retried(fake_servers: FakeServers) -> None:
    fake = FakeOrderService(stream(2, then=UNAVAILABLE, message="server restarting"), stream(3))
    address = await fake_servers.start(fake)
    received: list[str] = []
    async with RillClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(Unavailable, match="server restarting"):
            async with client.process_orders(["a", "b", "c"]) as results:
                async for result in results:
                    received.append(result.order_id)

    assert received == ["a", "b"], "the items already delivered must not be delivered again"
    assert len(fake.calls) == 1


async def test_retries_are_bounded(fake_servers: FakeServers) -> None:
    fake = FakeOrderService(fail(UNAVAILABLE, "down"))
    address = await fake_servers.start(fake)
    async with RillClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(Unavailable, match="down"):
            async with client.process_orders(["a"]) as results:
                async for _ in results:
                    pass
        with pytest.raises(Unavailable, match="down"):
            await client.get_order("a")

    assert [call.method for call in fake.calls] == ["ProcessOrders"] * 4 + ["GetOrder"] * 4


async def test_other_errors_are_not_retried(fake_servers: FakeServers) -> None:
    fake = FakeOrderService(fail(grpc.StatusCode.INTERNAL, "boom"), stream(1))
    address = await fake_servers.start(fake)
    async with RillClient(address, retry=FAST_RETRY) as client:
        with pytest.raises(Internal, match="boom"):
            async with client.process_orders(["a"]) as results:
                async for _ in results:
                    pass

    assert len(fake.calls) == 1


async def test_a_unary_call_is_retried_on_unavailable(fake_servers: FakeServers) -> None:
    fake = FakeOrderService(fail(UNAVAILABLE), stream(0))
    address = await fake_servers.start(fake)
    async with RillClient(address, retry=FAST_RETRY) as client:
        order = await client.get_order("a")

    assert (order.order_id, order.customer_id) == ("a", "customer_fake")
    assert [call.outcome for call in fake.calls] == ["UNAVAILABLE", "ok"]


async def test_the_deadline_covers_the_retries(fake_servers: FakeServers) -> None:
    # Two attempts fail UNAVAILABLE, the third hangs until the deadline ends it. Each attempt's
    # deadline, as the service sees it, is what is left of the call's: the backoffs used it up.
    patient = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.05, jitter=0)

    async def attempt(deadline: float) -> bool:
        fake = FakeOrderService(fail(UNAVAILABLE), fail(UNAVAILABLE), hang_after(0))
        retries = Retries()
        address = await fake_servers.start(fake)
        async with RillClient(address, retry=patient, on_retry=retries) as client:
            with pytest.raises(DeadlineExceeded):
                async with client.process_orders(["a"], timeout=deadline) as results:
                    async for _ in results:
                        pass
        if not fake.hanging.is_set():
            return False  # the deadline passed before the third attempt: a longer one
        await asyncio.wait_for(fake.cancelled.wait(), 30)
        assert [call.outcome for call in fake.calls] == ["UNAVAILABLE", "UNAVAILABLE", "cancelled"]
        first, _, last = (call.time_remaining for call in fake.calls)
        assert first is not None
        assert last is not None
        waited = sum(delay for _, _, delay in retries.seen)
        assert waited == pytest.approx(0.1)
        # 1 ms: grpc sends the timeout rounded to its unit.
        assert last <= first - waited + 0.001, "the retry got a fresh deadline"
        return True

    await parked_within(attempt)


async def test_a_server_that_starts_after_the_first_attempt_is_reached(server_settings: Settings) -> None:
    # Find a free port by letting a server pick one, then stop it: nothing listens there now.
    settings = server_settings
    probe = create_server(settings)
    await probe.start()
    address = probe.address
    await probe.stop(grace=0)

    first_failure = asyncio.Event()

    def on_retry(attempt: int, error: RillError, delay: float) -> None:
        first_failure.set()

    patient = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=0.5)

    async def call() -> list[str]:
        async with (
            RillClient(address, retry=patient, on_retry=on_retry) as client,
            client.process_orders(["a", "b"]) as results,
        ):
            return [result.order_id async for result in results]

    server = None
    try:
        # The TaskGroup owns the call: if anything below fails, the call is cancelled and awaited.
        async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
            calling = tasks.create_task(call())
            await first_failure.wait()
            server = create_server(settings.model_copy(update={"address": address}))
            await server.start()
        assert calling.result() == ["a", "b"]
    finally:
        if server is not None:
            await server.stop(grace=0)
