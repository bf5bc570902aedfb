"""server.brokers: the broker that configuration names. Nothing here connects to RabbitMQ."""

from __future__ import annotations

import subprocess
import sys

import pydantic
import pytest

from mediator.message_brokers.devnull import DevnullMessageBroker
from mediator.message_brokers.memory import InMemoryMessageBroker
from mediator.message_brokers.protocol import MessageBroker
from mediator.message_brokers.rabbitmq import DEFAULT_EXCHANGE, RabbitMQMessageBroker
from mediator.message_brokers.retrying import RetryingMessageBroker
from server import Settings, create_server
from server.brokers import StartableBroker, broker_from_url


def test_devnull_and_memory() -> None:
    assert isinstance(broker_from_url("devnull"), DevnullMessageBroker)
    assert isinstance(broker_from_url("memory"), InMemoryMessageBroker)
    assert not isinstance(broker_from_url("memory"), StartableBroker)


def test_an_amqp_url_is_a_rabbitmq_broker_on_the_default_exchange() -> None:
    retrying = broker_from_url("amqp://guest:guest@127.0.0.1:5672/")
    assert isinstance(retrying, RetryingMessageBroker)  # what RabbitMQ cannot take is kept and re-sent
    assert isinstance(retrying, MessageBroker)
    assert isinstance(retrying, StartableBroker)
    broker = retrying.inner
    assert isinstance(broker, RabbitMQMessageBroker)
    assert retrying.name == "RabbitMQMessageBroker"  # what metrics and traces call it
    assert broker.exchange == DEFAULT_EXCHANGE == "rill.notifications"
    assert not broker.mandatory, "nobody being subscribed yet must not fail the service"
    assert broker.safe_url == "amqp://guest:******@127.0.0.1:5672/"


def test_exchange_and_mandatory_are_taken_from_the_query_and_other_options_passed_on() -> None:
    retrying = broker_from_url(
        "amqps://user:pw@rabbit.example/prod?exchange=events&heartbeat=5&mandatory=true"
    )
    assert isinstance(retrying, RetryingMessageBroker)
    broker = retrying.inner
    assert isinstance(broker, RabbitMQMessageBroker)
    assert (broker.exchange, broker.mandatory) == ("events", True)
    assert broker.safe_url == "amqps://user:******@rabbit.example/prod?heartbeat=5"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "unknown message broker ''"),
        ("rabbitmq", "unknown message broker 'rabbitmq'"),
        ("kafka://user:s3cret@host", "unknown message broker 'kafka://user:******@host'"),
        ("amqp:///vhost", "names no host"),
        ("amqp://user:s3cret@host:99999/", "'amqp://user:******@host:99999/': Port out of range"),
        ("amqp://host/?exchange=", "exchange= must name an exchange"),
        ("amqp://host/?mandatory=maybe", "mandatory= must be true or false"),
    ],
)
def test_anything_else_is_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:  # noqa: PT011 - the message is checked below
        broker_from_url(spec)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_settings_refuse_an_unknown_broker_without_showing_its_password() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings(broker="kafka://user:s3cret@host")
    assert "unknown message broker" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_settings_read_rill_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RILL_BROKER", raising=False)
    assert Settings().broker == "memory"
    monkeypatch.setenv("RILL_BROKER", "devnull")
    assert Settings().broker == "devnull"


async def test_create_server_builds_the_broker_the_settings_name() -> None:
    server = create_server(Settings(address="127.0.0.1:0", http_address="", broker="devnull"))
    assert isinstance(server.broker, DevnullMessageBroker)
    await server.stop(grace=0)


def test_importing_mediator_or_server_does_not_import_aio_pika() -> None:
    code = (
        "import sys, mediator, mediator.message_brokers, server, server.brokers; "
        "from server.brokers import broker_from_url; broker_from_url('memory'); "
        "assert 'aio_pika' not in sys.modules, 'aio_pika was imported'"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
