"""The message broker named by configuration (``RILL_BROKER``): ``devnull``, ``memory`` or a URL.

================================================  ==============================================
``broker``                                        notifications go to
================================================  ==============================================
``memory`` (default)                              the last 10,000 messages, in memory (lost on exit)
``devnull``                                       nowhere
``amqp://user:password@host:5672/vhost``          RabbitMQ: the durable topic exchange
``amqps://...``                                   ``rill.notifications``, routing key = topic
``amqp://...?exchange=name``                      ... the exchange ``name``
``amqp://...?mandatory=true``                     ... an error when no queue is bound for the topic
================================================  ==============================================

An AMQP broker is wrapped in :class:`~mediator.message_brokers.retrying.RetryingMessageBroker`: a
notification RabbitMQ cannot take while unreachable still fails its event run (the client hears of
it), and is kept and re-sent once RabbitMQ is back.

Other query options of an AMQP URL (``heartbeat``, ``name``, ...) are aio-pika's and passed on.
AMQP needs the ``rabbitmq`` extra (``pip install 'rill[rabbitmq]'``), imported only when used.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
import urllib.parse

from mediator.message_brokers.devnull import DevnullMessageBroker
from mediator.message_brokers.memory import InMemoryMessageBroker
from mediator.message_brokers.protocol import MessageBroker
from mediator.message_brokers.retrying import RetryingMessageBroker

__all__ = ["AMQP_SCHEMES", "StartableBroker", "broker_from_url", "check_broker_spec"]

AMQP_SCHEMES = ("amqp", "amqps")
_OPTIONS = ("exchange", "mandatory")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@typing.runtime_checkable
class StartableBroker(typing.Protocol):
    """A broker that connects before the server serves (and fails the start-up when it cannot)."""

    async def start(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class _AmqpSpec:
    url: str
    exchange: str | None
    mandatory: bool


def _masked(spec: str) -> str:
    """``spec`` without the password it may hold, for error messages."""
    try:
        parts = urllib.parse.urlsplit(spec)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return spec
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:******@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _parse_amqp(spec: str) -> _AmqpSpec:
    parts = urllib.parse.urlsplit(spec)
    if not parts.hostname:
        raise ValueError(f"broker URL {_masked(spec)!r} names no host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise ValueError(f"broker URL {_masked(spec)!r}: {error}") from None
    options: dict[str, str] = {}
    passed_on: list[tuple[str, str]] = []
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            options[key] = value
        else:
            passed_on.append((key, value))
    exchange = options.get("exchange")
    if exchange is not None and not exchange:
        raise ValueError(f"broker URL {_masked(spec)!r}: exchange= must name an exchange")
    mandatory_text = options.get("mandatory", "false").lower()
    if mandatory_text not in _BOOLEANS:
        raise ValueError(f"broker URL {_masked(spec)!r}: mandatory= must be true or false")
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(passed_on)))
    return _AmqpSpec(url, exchange, _BOOLEANS[mandatory_text])


def check_broker_spec(spec: str) -> str:
    """``spec`` if :func:`broker_from_url` can build a broker from it, else a clear ``ValueError``.

    Only parses: nothing is connected to. For validating settings as they are loaded.
    """
    if spec in ("devnull", "memory"):
        return spec
    scheme = spec.partition("://")[0].lower() if "://" in spec else ""
    if scheme not in AMQP_SCHEMES:
        raise ValueError(
            f"unknown message broker {_masked(spec)!r}: expected 'devnull', 'memory' or an "
            "amqp:// or amqps:// URL (amqp://user:password@host:5672/vhost?exchange=name)"
        )
    _parse_amqp(spec)
    if importlib.util.find_spec("aio_pika") is None:
        raise ValueError(
            f"broker {_masked(spec)!r} needs RabbitMQ support: pip install 'rill[rabbitmq]' (aio-pika)"
        )
    return spec


def broker_from_url(spec: str, *, retrying: bool = True) -> MessageBroker:
    """The broker ``spec`` names (see the module docs); not connected yet for AMQP (``start()``).

    ``retrying=False``: an AMQP broker is not wrapped in a ``RetryingMessageBroker``, for the outbox
    relay, which retries durably itself (:mod:`server.store.relay`).
    """
    check_broker_spec(spec)
    if spec == "devnull":
        return DevnullMessageBroker()
    if spec == "memory":
        return InMemoryMessageBroker()
    from mediator.message_brokers import rabbitmq  # the optional extra, only when asked for

    amqp = _parse_amqp(spec)
    plain = rabbitmq.RabbitMQMessageBroker(
        amqp.url, amqp.exchange or rabbitmq.DEFAULT_EXCHANGE, mandatory=amqp.mandatory
    )
    # What RabbitMQ cannot take while it is unreachable is kept and re-sent once it is back.
    return RetryingMessageBroker(plain) if retrying else plain
