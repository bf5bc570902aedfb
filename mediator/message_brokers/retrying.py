"""Keep the notifications a broker could not take, and send them again once it is back.

A notification describes work that did happen: when the broker is unreachable, failing the stream
tells the client, but the notification itself must not be lost. :class:`RetryingMessageBroker` wraps
any broker; a send that fails with :class:`~mediator.exceptions.BrokerUnavailable` still raises (the
event run fails, so the client hears of it), and the message is kept, in memory, and re-sent in the
background with exponential backoff until the broker takes it::

    broker = RetryingMessageBroker(RabbitMQMessageBroker("amqp://guest:guest@127.0.0.1:5672/"))

Delivery is at least once, keyed by the envelope's ``message_id``: a message whose confirmation was
lost is sent again under the same id. At most ``max_pending`` messages are kept; one more is dropped,
logged with its id and counted (``dropped``). On :meth:`aclose` the backlog gets ``flush_timeout``
seconds; what is left then is logged one line per message and counted (``dropped``) too, never lost
silently. Memory is not durable: a process killed outright loses the backlog (a transactional outbox
is what survives that).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import uuid

from mediator.exceptions import BrokerError, BrokerUnavailable, MediatorClosed
from mediator.message_brokers.protocol import Message, MessageBroker, broker_name

__all__ = ["RetryingMessageBroker"]

logger = logging.getLogger("mediator.retrying")


class RetryingMessageBroker:
    """A :class:`MessageBroker` that keeps and re-sends what ``inner`` could not take (module docs).

    :param max_pending: messages kept for re-sending at most.
    :param backoff: seconds before the first re-send of the backlog; doubled after each failure ...
    :param max_backoff: ... up to this (jittered).
    :param flush_timeout: seconds :meth:`aclose` gives the backlog before it gives up on it.
    """

    def __init__(
        self,
        inner: MessageBroker,
        *,
        max_pending: int = 100_000,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        flush_timeout: float = 5.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        if backoff <= 0 or max_backoff < backoff:
            raise ValueError(f"need 0 < backoff <= max_backoff, not {backoff} and {max_backoff}")
        if flush_timeout < 0:
            raise ValueError(f"flush_timeout must not be negative, not {flush_timeout}")
        self.inner = inner
        self.name = broker_name(inner)
        self.max_pending = max_pending
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.flush_timeout = flush_timeout
        self._pending: collections.OrderedDict[uuid.UUID, Message] = collections.OrderedDict()
        self._resender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._closed = False
        self.resent = 0
        """Messages the broker took on a re-send."""
        self.dropped = 0
        """Messages given up (over ``max_pending``, refused on re-send, or left at close): each logged."""

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.inner!r}, {len(self._pending)} pending>"

    @property
    def pending(self) -> int:
        """Messages kept for re-sending now."""
        return len(self._pending)

    async def start(self) -> None:
        """Start ``inner`` if it needs starting (connects before the server serves)."""
        start = getattr(self.inner, "start", None)
        if start is not None:
            await start()

    async def send_message(self, message: Message) -> None:
        """Send ``message``; if the broker is unavailable, keep it for re-sending, then raise."""
        if self._closed:
            raise MediatorClosed(f"{self!r} is closed")
        try:
            await self.inner.send_message(message)
        except BrokerUnavailable:
            self._keep(message)
            raise

    def _keep(self, message: Message) -> None:
        if message.message_id in self._pending:
            return
        if len(self._pending) >= self.max_pending:
            self._drop(message, f"{self.max_pending} messages are already waiting to be re-sent")
            return
        self._pending[message.message_id] = message
        self._flushed.clear()
        if self._resender is None:
            self._resender = asyncio.get_running_loop().create_task(self._resend_backlog())
        self._wake.set()

    def _drop(self, message: Message, reason: str) -> None:
        self.dropped += 1
        logger.error(
            "notification %s %s (topic %r) was not sent: %s",
            message.message_name,
            message.message_id,
            message.topic,
            reason,
        )

    async def _resend_backlog(self) -> None:
        """Owned by this broker, cancelled and awaited by :meth:`aclose`."""
        failures = 0
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if failures:
                delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1)) * random.uniform(0.5, 1)
                await asyncio.sleep(delay)
            failures = 0 if await self._resend_pending() else failures + 1

    async def _resend_pending(self) -> bool:
        """Re-send the backlog oldest first; whether all of it was taken (False: the broker is down)."""
        while self._pending:
            message_id, message = next(iter(self._pending.items()))
            try:
                await self.inner.send_message(message)
            except BrokerUnavailable as error:
                logger.warning("re-sending %d notifications: still unavailable: %s", self.pending, error)
                return False
            except BrokerError as error:
                self._pending.pop(message_id, None)
                self._drop(message, f"the broker refused it: {error}")
                continue
            except MediatorClosed:
                return False
            self._pending.pop(message_id, None)
            self.resent += 1
        self._flushed.set()
        logger.info("every kept notification was re-sent (%d in all)", self.resent)
        return True

    async def wait_flushed(self) -> None:
        """Return once nothing is kept for re-sending (at once if nothing is)."""
        await self._flushed.wait()

    async def aclose(self) -> None:
        """Give the backlog ``flush_timeout`` seconds, log and count what is left, close ``inner``."""
        if self._closed:
            return
        self._closed = True
        resender, self._resender = self._resender, None
        if resender is not None:
            resender.cancel()
            await asyncio.gather(resender, return_exceptions=True)
        if self._pending and self.flush_timeout > 0:
            try:
                async with asyncio.timeout(self.flush_timeout):
                    await self._resend_pending()
            except TimeoutError:
                pass
        for message in list(self._pending.values()):
            self._drop(message, "the broker was closed before it could take it")
        self._pending.clear()
        self._flushed.set()
        await self.inner.aclose()

    async def __aenter__(self) -> RetryingMessageBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
