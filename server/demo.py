"""The demo application: OrderService and FileService, served by ``python -m server`` without ``--app``.

It is one application of the platform, built the way any team's is: mediators from the per-service
settings (``settings.service("orders")``), bindings of the contract's RPCs to mediator requests, and
a container for the handlers' shared state. :class:`DemoApp` keeps that container, so tests and
benchmarks can read what the event handlers recorded.

Its state is in the store ``settings.database_url`` names (by default the embedded SQLite file in
``settings.state_dir``): the event handlers of each item record the order (or file) and stage its
notification in the outbox in one unit of work (:mod:`server.store`), committed before the item is
delivered in ``strict`` delivery. With ``database_url = "memory"`` there is no store: bounded
in-memory read models, notifications straight to the broker (tests).
"""

from __future__ import annotations

import typing

from dependency_injector import containers, providers

import mediator
from mediator import bootstrap
from mediator.message_brokers.protocol import MessageBroker
from mediator.unit_of_work import UnitOfWorkFactory
from protos.files.v1 import files_pb2
from protos.orders.v1 import orders_pb2
from server.apps import Resource
from server.binding import Rpc, ServiceBinding
from server.brokers import broker_from_url
from server.services import files, orders
from server.settings import Settings
from server.store.urls import MEMORY

if typing.TYPE_CHECKING:
    from server.store import OutboxBroker, Store
    from server.store.relay import OutboxRelay

__all__ = ["DemoApp", "Handlers"]


class Handlers(containers.DeclarativeContainer):
    """How every handler of the demo is built; shared state lives in singletons."""

    config = providers.Configuration()
    order_book = providers.Singleton(orders.OrderBook, capacity=config.orders_kept)
    order_analytics = providers.Singleton(orders.OrderAnalytics)
    file_storage = providers.Singleton(files.FileStorage, root=config.storage_root)
    file_ledger = providers.Singleton(files.FileLedger, capacity=config.files_kept)

    process_orders = providers.Factory(orders.ProcessOrdersCommandHandler)
    get_order = providers.Factory(orders.GetOrderQueryHandler, book=order_book)
    order_processed = providers.Factory(orders.OrderProcessedEventHandler, book=order_book)
    order_analytics_handler = providers.Factory(orders.OrderAnalyticsEventHandler, analytics=order_analytics)
    process_files = providers.Factory(files.ProcessFilesCommandHandler, storage=file_storage)
    file_processed = providers.Factory(files.FileProcessedEventHandler, ledger=file_ledger)


class DemoApp:
    """The demo's bindings for ``settings``, notifications to ``broker`` (else ``settings.broker``'s).

    ``resources`` is what the server starts before serving and closes after the drain: the store.
    """

    def __init__(self, settings: Settings, broker: MessageBroker | None = None) -> None:
        with_store = settings.database_url != MEMORY
        # With a store the outbox is the backlog, durable, and the relay retries: the plain broker.
        self.broker = (
            broker if broker is not None else broker_from_url(settings.broker, retrying=not with_store)
        )
        """Where notifications are published (by the outbox relay when there is a store)."""
        self.resources: list[Resource] = []
        self.handlers = Handlers()
        self.handlers.config.storage_root.from_value(settings.storage_root)
        self.handlers.config.orders_kept.from_value(settings.limits.orders_kept)
        self.handlers.config.files_kept.from_value(settings.limits.files_kept)
        self.handlers.file_storage()  # fail at start-up, not on the first call, if the root is wrong
        self.store: Store | None = None
        """The :class:`server.store.Store` (None with ``database_url = "memory"``)."""
        self.outbox: OutboxBroker | None = None
        """The :class:`server.store.OutboxBroker` the mediators send notifications to (with a store)."""
        mediator_broker: MessageBroker = self.broker
        unit_of_work: UnitOfWorkFactory | None = None
        self.relay: OutboxRelay | None = None
        """The :class:`server.store.relay.OutboxRelay` publishing the outbox to ``broker`` (with a store)."""
        if with_store:
            # Only with a store: the in-memory demo (tests) does not load SQLAlchemy.
            from server.store import OutboxBroker, Store
            from server.store.read_models import StoredFileLedger, StoredOrderBook
            from server.store.relay import OutboxRelay

            store = Store.from_settings(settings.database_url, settings.state_dir, settings.store)
            assert store is not None
            self.store, self.outbox = store, OutboxBroker(store)
            self.resources.append(store)
            self.handlers.order_book.override(providers.Object(StoredOrderBook(store)))
            self.handlers.file_ledger.override(providers.Object(StoredFileLedger(store)))
            mediator_broker, unit_of_work = self.outbox, store.units
            # After the store in resources: started once it is open, stopped (after the drain) before
            # it closes; the relay starts the broker with itself and closes it once stopped.
            self.relay = OutboxRelay(
                store.engine, self.broker, settings.outbox, own_broker=True, committer=store.committer
            )
            self.outbox.on_committed.append(self.relay.notify)
            self.resources.append(self.relay)
        orders_settings, files_settings = settings.service("orders"), settings.service("files")

        def options(
            commands: typing.Callable[[mediator.RequestMap], None],
            events: typing.Callable[[mediator.EventMap], None],
        ) -> dict[str, typing.Any]:
            return {
                "di_container": self.handlers,
                "commands_mapper": commands,
                "domain_events_mapper": events,
                "message_broker": mediator_broker,
                "unit_of_work": unit_of_work,
            }

        order_options = options(orders.commands_mapper, orders.domain_events_mapper)
        self.bindings = [
            ServiceBinding(
                orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
                streaming=bootstrap.bootstrap_streaming(
                    **order_options, **orders_settings.streaming_options()
                ),
                unary=bootstrap.bootstrap(**order_options, **orders_settings.unary_options()),
                rpcs=[
                    Rpc("ProcessOrders", orders.ProcessOrdersCommand, orders.OrderProcessedResult),
                    Rpc("GetOrder", orders.GetOrderQuery, orders.OrderView),
                ],
            ),
            # FileService has no unary RPC: it gets no RequestMediator.
            ServiceBinding(
                files_pb2.DESCRIPTOR.services_by_name["FileService"],
                streaming=bootstrap.bootstrap_streaming(
                    **options(files.commands_mapper, files.domain_events_mapper),
                    **files_settings.streaming_options(),
                ),
                rpcs=[Rpc("ProcessFiles", files.ProcessFilesCommand, files.FileProcessedResult)],
            ),
        ]
