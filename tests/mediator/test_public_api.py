"""The public surface: pinned names, the spec's names, and a light ``import mediator``."""

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import mediator

REPO_ROOT = Path(__file__).resolve().parents[2]

SPEC_NAMES = [
    "Request",
    "Response",
    "Event",
    "DomainEvent",
    "NotificationEvent",
    "RequestHandler",
    "StreamingRequestHandler",
    "EventHandler",
    "RequestMap",
    "EventMap",
    "RequestMediator",
    "StreamingRequestMediator",
]


def test_all_is_pinned() -> None:
    assert mediator.__all__ == [
        "Container",
        "DomainEvent",
        "Event",
        "EventDelivery",
        "EventHandler",
        "EventHandlerError",
        "EventHandlerTimeout",
        "EventHandlingError",
        "EventMap",
        "EventProcessing",
        "HandlerNotFound",
        "MediatorError",
        "Message",
        "MessageBroker",
        "NotificationEvent",
        "Request",
        "RequestHandler",
        "RequestMap",
        "RequestMediator",
        "Response",
        "StreamingRequestHandler",
        "StreamingRequestMediator",
    ]


def test_all_lists_exactly_the_public_names_sorted() -> None:
    public = [
        name
        for name, value in vars(mediator).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    ]

    assert mediator.__all__ == sorted(public, key=str.casefold)


def test_every_name_the_spec_uses_is_importable_from_mediator() -> None:
    for name in SPEC_NAMES:
        assert name in mediator.__all__
        assert getattr(mediator, name).__name__ == name

    from mediator import bootstrap
    from mediator.message_brokers import devnull

    assert callable(bootstrap.bootstrap)
    assert callable(bootstrap.bootstrap_streaming)
    assert devnull.DevnullMessageBroker.__name__ == "DevnullMessageBroker"


def test_a_domain_event_subclass_can_be_frozen_as_the_spec_writes_it() -> None:
    class OrderProcessedEvent(mediator.DomainEvent, frozen=True):
        order_id: str

    event = OrderProcessedEvent(order_id="o1")

    assert isinstance(event, mediator.Event)
    assert hash(event) == hash(OrderProcessedEvent(order_id="o1"))


def test_import_mediator_does_not_import_transports_or_containers() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import mediator
        import mediator.bootstrap
        import mediator.message_brokers.devnull
        import mediator.message_brokers.memory
        heavy = ("grpc", "di", "dependency_injector", "aio_pika", "cqrs")
        print(sorted(name for name in sys.modules if name.split(".")[0] in heavy))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
