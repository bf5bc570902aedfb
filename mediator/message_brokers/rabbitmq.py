"""Send notifications to RabbitMQ: an optional extra (``pip install 'rill[rabbitmq]'``, aio-pika).

``import mediator`` never imports this module; import it by name::

    from mediator.message_brokers.rabbitmq import RabbitMQMessageBroker

    async with RabbitMQMessageBroker("amqp://guest:guest@127.0.0.1:5672/") as broker:
        streaming = bootstrap.bootstrap_streaming(..., message_broker=broker)

What goes on the wire
    Each :class:`~mediator.message_brokers.protocol.Message` is published to a durable *topic*
    exchange (``rill.notifications`` unless told otherwise) with the notification's topic as routing
    key, as a persistent message whose body is the envelope in JSON (``message_id``,
    ``message_name``, ``topic``, ``occurred_at``, ``payload``). The AMQP properties repeat what a
    consumer may want to filter on without parsing: ``content_type="application/json"``,
    ``message_id``, ``type`` (the message name), ``timestamp`` (occurred-at, whole seconds) and
    ``app_id="rill"``.

Guarantees
    Publisher confirms are on: :meth:`RabbitMQMessageBroker.send_message` returns only once RabbitMQ
    has acknowledged the message. A negative acknowledgement is a :class:`BrokerError`; so is a
    message no queue is bound to receive (returned as unroutable), when ``mandatory=True``.
    Delivery is *at least once*: when a connection drops after RabbitMQ took a message but before its
    acknowledgement arrived, the retry publishes it again. Consumers deduplicate by ``message_id``.

Failures
    One connection and one channel are shared by every send and re-established after a drop: a send
    that fails on a broken connection discards it, and the next attempt connects afresh. Attempts are
    spaced by exponential backoff (``backoff`` doubling up to ``max_backoff``, jittered) and bounded by
    ``max_attempts`` and by ``send_timeout`` seconds in all; then :class:`BrokerUnavailable` names the
    URL (password masked) and the last cause. :meth:`RabbitMQMessageBroker.start` connects once, with
    no retry, so that a service fails at start-up when its broker is unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
import yarl
from aio_pika.connection import make_url

from mediator.exceptions import BrokerError, BrokerUnavailable, MediatorClosed
from mediator.message_brokers.protocol import Message

__all__ = ["DEFAULT_EXCHANGE", "RabbitMQMessageBroker", "mask_password", "to_amqp_message"]

DEFAULT_EXCHANGE = "rill.notifications"

logger = logging.getLogger("mediator.rabbitmq")

# What a fresh connection may cure: the network, the server going away, a channel it closed, a
# deadline. (aiormq's AMQPConnectionError is a ConnectionError; TimeoutError is an OSError; a
# connection closed by the peer in the middle of the AMQP handshake leaves aiormq's frame reader
# as StopAsyncIteration.)
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    StopAsyncIteration,
    aio_pika.exceptions.ChannelInvalidStateError,
    aio_pika.exceptions.ChannelClosed,
)
# What it may not: the server refusing what we ask for. Checked before _TRANSIENT.
_REFUSED: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.ChannelPreconditionFailed,
    aiormq.exceptions.ChannelAccessRefused,  # not re-exported by aio-pika
)


def mask_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``******`` (for messages and logs)."""
    password = _password_of(url)
    return str(yarl.URL(url).with_password("******")) if password else url


def _password_of(url: str) -> str | None:
    try:
        return yarl.URL(url).password
    except (TypeError, ValueError):
        return None


def to_amqp_message(message: Message) -> aio_pika.Message:
    """The persistent AMQP message that carries ``message``'s envelope as JSON."""
    return aio_pika.Message(
        message.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(message.message_id),
        type=message.message_name,
        timestamp=message.occurred_at,
        app_id="rill",
    )


@dataclasses.dataclass(frozen=True, eq=False)
class _Link:
    """A connection, its publishing channel (confirms on) and the declared exchange."""

    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    exchange: aio_pika.abc.AbstractExchange

    @property
    def usable(self) -> bool:
        # After a network failure the channel is closed while the connection may not say so yet.
        return not (self.connection.is_closed or self.channel.is_closed)


class RabbitMQMessageBroker:
    """Publishes notifications to a RabbitMQ topic exchange, confirmed, reconnecting after drops.

    :param url: ``amqp://`` or ``amqps://`` URL (aio-pika's query options, e.g. ``heartbeat``, apply).
    :param exchange: the durable topic exchange to publish to; declared (idempotently) on connect.
    :param connect_timeout: seconds one connection attempt (connect, open channel, declare) may take.
    :param publish_timeout: seconds one publish may wait for RabbitMQ's acknowledgement.
    :param max_attempts: attempts per notification before giving up (1 = no retry).
    :param backoff: seconds before the second attempt; doubled for each further one ...
    :param max_backoff: ... up to this.
    :param send_timeout: seconds one :meth:`send_message` may take in all, retries included.
    :param mandatory: an unroutable notification (no queue bound for its topic) is an error. Off by
        default: in publish/subscribe, nobody being subscribed yet is normal and must not fail the service.
    """

    def __init__(
        self,
        url: str,
        exchange: str = DEFAULT_EXCHANGE,
        *,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        send_timeout: float = 15.0,
        mandatory: bool = False,
    ) -> None:
        if not exchange:
            raise ValueError("exchange must be named: the default exchange cannot be declared")
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("publish_timeout", publish_timeout),
            ("send_timeout", send_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        if backoff < 0 or max_backoff < backoff:
            raise ValueError(f"need 0 <= backoff <= max_backoff, not {backoff} and {max_backoff}")
        self._url = url
        self._password = _password_of(url)
        self.safe_url = mask_password(url)
        self.exchange = exchange
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.send_timeout = send_timeout
        self.mandatory = mandatory
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.safe_url} exchange={self.exchange!r}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        """A connection is open (as far as the client knows: a drop is noticed on use)."""
        return self._link is not None and self._link.usable

    async def start(self) -> None:
        """Connect and declare the exchange, once, without retrying.

        Raises :class:`BrokerUnavailable` naming the URL when RabbitMQ cannot be reached, and
        :class:`BrokerError` when it refuses the exchange (declared elsewhere with other settings).
        """
        try:
            await self._link_up(self.connect_timeout)
        except _REFUSED as error:
            raise self._refused(error) from error
        except _TRANSIENT as error:
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {self.safe_url}: {self._describe(error)}"
            ) from error

    async def send_message(self, message: Message) -> None:
        """Publish ``message`` and return once RabbitMQ confirmed it (see the module docs)."""
        self._check_open()
        body = to_amqp_message(message)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.send_timeout
        attempt = 0
        while True:
            attempt += 1
            link: _Link | None = None
            try:
                link = await self._link_up(min(self.connect_timeout, deadline - loop.time()))
                async with asyncio.timeout(min(self.publish_timeout, deadline - loop.time())):
                    await link.exchange.publish(body, routing_key=message.topic, mandatory=self.mandatory)
                return
            except aio_pika.exceptions.PublishError as error:
                raise BrokerError(
                    f"RabbitMQ at {self.safe_url} could not route {message.message_name} "
                    f"{message.message_id}: no queue is bound to exchange {self.exchange!r} "
                    f"for routing key {message.topic!r}"
                ) from error
            except aio_pika.exceptions.DeliveryError as error:
                raise BrokerError(
                    f"RabbitMQ at {self.safe_url} refused {message.message_name} {message.message_id} "
                    f"(negative acknowledgement): {self._describe(error)}"
                ) from error
            except _REFUSED as error:
                raise self._refused(error) from error
            except _TRANSIENT as error:
                if link is not None:
                    await self._discard(link)
                if self._closed:
                    raise MediatorClosed(f"{self!r} was closed while sending") from error
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1)
                if attempt >= self.max_attempts or loop.time() + delay >= deadline:
                    raise BrokerUnavailable(
                        f"RabbitMQ at {self.safe_url} did not confirm {message.message_name} "
                        f"{message.message_id} after {attempt} attempt{'s' if attempt > 1 else ''} "
                        f"in {loop.time() - started:.1f} s: {self._describe(error)}"
                    ) from error
                logger.warning(
                    "publishing to %s failed (attempt %d of %d): %s; retrying in %.2f s",
                    self.safe_url,
                    attempt,
                    self.max_attempts,
                    self._describe(error),
                    delay,
                )
                await asyncio.sleep(delay)
                self._check_open()

    async def aclose(self) -> None:
        """Close the connection. Idempotent; sending afterwards raises :class:`MediatorClosed`."""
        if self._closed:
            return
        self._closed = True
        async with self._connecting:  # a connection being opened is closed too, not leaked
            link, self._link = self._link, None
        if link is not None:
            await self._close_quietly(link.connection)

    async def __aenter__(self) -> RabbitMQMessageBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise MediatorClosed(f"{self!r} is closed")

    async def _link_up(self, budget: float) -> _Link:
        """The current link, or a new one (within ``budget`` seconds) if there is none or it broke."""
        link = self._link
        if link is not None and link.usable:
            return link
        async with asyncio.timeout(budget), self._connecting:
            self._check_open()
            link = self._link
            if link is not None and link.usable:
                return link  # another send reconnected while this one waited
            if link is not None:
                await self._discard(link)
            link = await self._connect()
            self._link = link
            return link

    async def _connect(self) -> _Link:
        # aio_pika.connect(url), in two steps: a connect cut short (cancelled, timed out) must still
        # close its connection; one left to the garbage collector schedules its close from __del__,
        # which then is never awaited.
        connection = aio_pika.Connection(make_url(self._url))
        try:
            await connection.connect()
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await self._close_quietly(connection)
            raise
        logger.info("connected to RabbitMQ at %s, exchange %r", self.safe_url, self.exchange)
        return _Link(connection, channel, exchange)

    async def _discard(self, link: _Link) -> None:
        """Forget ``link`` (unless a newer one already replaced it) and close its connection."""
        if self._link is link:
            self._link = None
        # Broken anyway: do not let a server that stopped answering hold up the retry for long.
        await self._close_quietly(link.connection, within=min(1.0, self.connect_timeout))

    async def _close_quietly(
        self, connection: aio_pika.abc.AbstractConnection, within: float | None = None
    ) -> None:
        # The connection may be dead already: closing it must neither hang nor raise.
        try:
            async with asyncio.timeout(self.connect_timeout if within is None else within):
                await connection.close()
        except Exception as error:
            logger.debug("closing the connection to %s: %s", self.safe_url, self._describe(error))

    def _refused(self, error: BaseException) -> BrokerError:
        return BrokerError(
            f"RabbitMQ at {self.safe_url} refused exchange {self.exchange!r} "
            f"(it must be a durable topic exchange): {self._describe(error)}"
        )

    def _describe(self, error: BaseException) -> str:
        text = str(error)
        if isinstance(error, TimeoutError) and not text:
            text = "timed out"
        elif isinstance(error, StopAsyncIteration):
            return "the connection was closed during the AMQP handshake"
        described = f"{type(error).__name__}: {text}" if text else type(error).__name__
        # Error texts may quote the URL; the password never leaves this object.
        return described.replace(self._password, "******") if self._password else described
