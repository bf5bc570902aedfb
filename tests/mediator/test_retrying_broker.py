"""``RetryingMessageBroker``: what the broker cannot take is kept, re-sent, or logged and counted."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from mediator import NotificationEvent
from mediator.exceptions import BrokerError, BrokerUnavailable
from mediator.message_brokers.protocol import Message
from mediator.message_brokers.retrying import RetryingMessageBroker


class FlakyBroker:
    """Unavailable while ``down``; refuses the topics in ``refused``; records what it took."""

    def __init__(self) -> None:
        self.down = True
        self.refused: set[str] = set()
        self.taken: list[uuid.UUID] = []
        self.attempts = 0
        self.tried = asyncio.Event()
        self.closed = False

    async def send_message(self, message: Message) -> None:
        self.attempts += 1
        self.tried.set()
        await asyncio.sleep(0)  # a real broker suspends
        if message.topic in self.refused:
            raise BrokerError("refused")
        if self.down:
            raise BrokerUnavailable("down")
        self.taken.append(message.message_id)

    async def aclose(self) -> None:
        self.closed = True


def message(topic: str = "t") -> Message:
    return Message.from_event(NotificationEvent[dict[str, int]](topic=topic, payload={"n": 1}))


async def test_a_message_the_broker_cannot_take_raises_and_is_re_sent_once_it_is_back() -> None:
    inner = FlakyBroker()
    broker = RetryingMessageBroker(inner, backoff=0.001, max_backoff=0.002)
    first, second = message(), message()
    for each in (first, second):
        with pytest.raises(BrokerUnavailable):
            await broker.send_message(each)
    assert broker.pending == 2
    inner.tried.clear()
    await inner.tried.wait()  # the background re-send is trying
    inner.down = False
    async with asyncio.timeout(10):  # a safety net against a hang, not a timing assertion
        await broker.wait_flushed()
    assert inner.taken == [first.message_id, second.message_id]  # oldest first, each once
    assert (broker.pending, broker.resent, broker.dropped) == (0, 2, 0)
    await broker.aclose()
    assert inner.closed


async def test_over_max_pending_a_message_is_dropped_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = RetryingMessageBroker(FlakyBroker(), max_pending=1, backoff=10, max_backoff=10, flush_timeout=0)
    kept, over = message(), message()
    with caplog.at_level(logging.ERROR, logger="mediator.retrying"):
        for each in (kept, over):
            with pytest.raises(BrokerUnavailable):
                await broker.send_message(each)
        assert (broker.pending, broker.dropped) == (1, 1)
        await broker.aclose()  # no flush time: the kept one is given up too
    lines = [record.getMessage() for record in caplog.records]
    assert any(str(over.message_id) in line and "already waiting" in line for line in lines)
    assert any(str(kept.message_id) in line and "closed before" in line for line in lines)
    assert broker.dropped == 2


async def test_a_message_refused_on_re_send_is_dropped_and_the_rest_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = FlakyBroker()
    broker = RetryingMessageBroker(inner, backoff=0.001, max_backoff=0.002)
    refused, fine = message("bad"), message("good")
    for each in (refused, fine):
        with pytest.raises(BrokerUnavailable):
            await broker.send_message(each)
    inner.refused.add("bad")
    inner.down = False
    with caplog.at_level(logging.ERROR, logger="mediator.retrying"):
        async with asyncio.timeout(10):
            await broker.wait_flushed()
    assert inner.taken == [fine.message_id]
    assert broker.dropped == 1
    assert any(str(refused.message_id) in record.getMessage() for record in caplog.records)
    await broker.aclose()


async def test_close_flushes_what_it_can_within_its_timeout() -> None:
    inner = FlakyBroker()
    broker = RetryingMessageBroker(inner, backoff=10, max_backoff=10)  # the background waits long
    kept = message()
    with pytest.raises(BrokerUnavailable):
        await broker.send_message(kept)
    inner.down = False
    await broker.aclose()
    assert inner.taken == [kept.message_id]
    assert broker.dropped == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
