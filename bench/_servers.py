"""The servers the end-to-end benchmarks read from, one per process: ``python -m bench._servers KIND``.

Every kind serves ``orders.v1.OrderService/ProcessOrders``: one ``OrderProcessedResult`` per order id
of the request, and prints ``ready PORT`` once it listens.

- ``raw``: grpc.aio with an async-generator servicer that builds the protobuf messages itself: the
  ceiling of a Python service.
- ``ours``: our adapter (:class:`server.binding.ServiceBinding`, as ``RillServer`` registers it) over
  our streaming mediator, with a bench-only handler: the same handler code as ``bench.mediator_throughput``
  (pydantic items, ``--events`` no-op domain events per item).
- ``cqrs``: python-cqrs 5.3.0's streaming mediator, same handler code over its classes, behind an
  async-generator servicer that converts each item to the protobuf message.
- ``handwritten``: the demo's ProcessOrders written by hand (:mod:`bench.handwritten_servicer`): the
  same per-order work as ``python -m server`` (OrderView in the OrderBook, analytics, a notification
  to an in-memory broker), no mediator.
- ``cqrs-orders``: the same work through python-cqrs 5.3.0 (:mod:`bench.cqrs_servicer`).

``--service-options`` gives the server the grpc options ``python -m server`` sets by default
(``LimitSettings().grpc_options()``: 100 streams per connection, keepalive, message sizes...).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import signal
import typing

import di
import grpc
from google.protobuf import timestamp_pb2

from bench import mediator_throughput as workloads
from protos.orders.v1 import orders_pb2

SERVICE = "orders.v1.OrderService"
MAX_CONCURRENT_EVENT_HANDLERS = 10

Handlers: typing.TypeAlias = "dict[str, grpc.RpcMethodHandler[typing.Any, typing.Any]]"


def _raw(options: argparse.Namespace) -> Handlers:
    result = orders_pb2.OrderProcessedResult
    small = options.shape == "small"

    async def process(
        request: orders_pb2.ProcessOrdersRequest, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> typing.AsyncIterator[orders_pb2.OrderProcessedResult]:
        for order_id in request.order_ids:
            if small:  # message shape: no Timestamp sub-message
                yield result(order_id=order_id, status="processed", items_count=3)
                continue
            message = result(order_id=order_id, status="processed", items_count=3)
            message.processed_at.FromDatetime(datetime.datetime.now())
            yield message

    async def process_writing(
        request: orders_pb2.ProcessOrdersRequest, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> None:
        for order_id in request.order_ids:
            message = result(order_id=order_id, status="processed", items_count=3)
            message.processed_at.FromDatetime(datetime.datetime.now())
            await context.write(message)

    return {
        "ProcessOrders": grpc.unary_stream_rpc_method_handler(
            process_writing if options.write else process,
            request_deserializer=orders_pb2.ProcessOrdersRequest.FromString,
            response_serializer=result.SerializeToString,
        )
    }


def _cqrs(options: argparse.Namespace) -> Handlers:
    from cqrs.bootstrap import requests as cqrs_bootstrap
    from cqrs.message_brokers import devnull as cqrs_devnull

    logging.getLogger("cqrs").addHandler(logging.NullHandler())  # records created, not printed
    theirs = workloads.THEIRS
    mediator = cqrs_bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=theirs.commands_mapper,
        domain_events_mapper=theirs.domain_events_mapper,
        message_broker=cqrs_devnull.DevnullMessageBroker(),
        max_concurrent_event_handlers=MAX_CONCURRENT_EVENT_HANDLERS,
        concurrent_event_handle_enable=True,
    )
    result = orders_pb2.OrderProcessedResult
    emit_events = options.events > 0

    async def process(
        request: orders_pb2.ProcessOrdersRequest, context: grpc.aio.ServicerContext[typing.Any, typing.Any]
    ) -> typing.AsyncIterator[orders_pb2.OrderProcessedResult]:
        command = theirs.command(order_ids=list(request.order_ids), emit_events=emit_events)
        async for item in mediator.stream(command):
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(item.processed_at)
            yield result(
                order_id=item.order_id, status=item.status, processed_at=stamp, items_count=item.items_count
            )

    return {
        "ProcessOrders": grpc.unary_stream_rpc_method_handler(
            process,
            request_deserializer=orders_pb2.ProcessOrdersRequest.FromString,
            response_serializer=result.SerializeToString,
        )
    }


def _ours(options: argparse.Namespace, extra_rpcs: bool = True) -> tuple[Handlers, typing.Any]:
    import mediator
    from mediator import bootstrap
    from mediator.message_brokers import devnull
    from server.binding import Rpc, ServiceBinding
    from server.calls import CallRegistry
    from server.services import orders

    ours = workloads.OURS
    with_events = options.events > 0

    class Command(ours.command):  # type: ignore[name-defined,misc]  # a base known at run time
        """The bench's request: the workload's command, with the process's events setting."""

        emit_events: bool = with_events

    response = ours.handler.handle.__annotations__["return"].__args__[0]

    def commands_mapper(mapper: mediator.RequestMap) -> None:
        mapper.bind(Command, ours.handler)
        mapper.bind(orders.GetOrderQuery, orders.GetOrderQueryHandler)

    common: dict[str, typing.Any] = {
        "di_container": di.Container(),
        "commands_mapper": commands_mapper,
        "domain_events_mapper": ours.domain_events_mapper,
        "message_broker": devnull.DevnullMessageBroker(),
        "max_concurrent_event_handlers": MAX_CONCURRENT_EVENT_HANDLERS,
        "concurrent_event_handle_enable": True,
    }
    binding = ServiceBinding(
        orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
        streaming=bootstrap.bootstrap_streaming(**common, event_delivery=options.delivery),
        unary=bootstrap.bootstrap(**common),
        rpcs=[
            Rpc("ProcessOrders", Command, response),
            Rpc("GetOrder", orders.GetOrderQuery, orders.OrderView),
        ],
    )
    if options.convert == "fromdatetime":  # before the fast path in server.convert: for before/after
        for bound in binding.rpcs:
            bound.to_message = _fromdatetime_converter(bound.response_class)
    if options.stall_timeout:  # the service's default (server.limits); the adapter's default is none
        return binding.method_handlers(CallRegistry(), stall_timeout=options.stall_timeout), binding
    return binding.method_handlers(CallRegistry()), binding


def _fromdatetime_converter(message_class: typing.Any) -> typing.Callable[[typing.Any], typing.Any]:
    """``server.convert.to_proto`` as it was before its Timestamp fast path (FromDatetime per stamp)."""
    fields = message_class.DESCRIPTOR.fields
    stamps = tuple(field.name for field in fields if field.message_type is not None)
    plain = tuple(field.name for field in fields if field.message_type is None)

    def previous(item: typing.Any) -> typing.Any:
        message = message_class(**{name: getattr(item, name) for name in plain})
        for name in stamps:
            value = getattr(item, name)
            if value is not None:
                getattr(message, name).FromDatetime(value)
        return message

    return previous


def _demo_state() -> tuple[typing.Any, typing.Any, typing.Any]:
    """The demo's OrderBook, OrderAnalytics and default broker, bounded as ``python -m server``'s."""
    from mediator.message_brokers.memory import InMemoryMessageBroker
    from server.limits import LimitSettings
    from server.services.orders import OrderAnalytics, OrderBook

    return OrderBook(LimitSettings().orders_kept), OrderAnalytics(), InMemoryMessageBroker()


async def _serve(options: argparse.Namespace) -> None:
    grpc_options: list[tuple[str, typing.Any]] = [
        (key, int(value) if value.isdigit() else value)
        for key, _, value in (item.partition("=") for item in options.option)
    ]
    if options.service_options:
        from server.limits import LimitSettings

        grpc_options = [*LimitSettings().grpc_options(), *grpc_options]
    server = grpc.aio.server(options=grpc_options)
    store: typing.Any = None
    relay: typing.Any = None
    if options.kind == "handwritten":
        from bench.handwritten_servicer import OrderServicer
        from protos.orders.v1 import orders_pb2_grpc

        if options.store:  # the service's default store: the embedded SQLite file in --state-dir
            import pathlib

            from server.store import Store
            from server.store.outbox_settings import OutboxSettings
            from server.store.relay import OutboxRelay

            store = Store.from_settings("", pathlib.Path(options.state_dir))
            assert store is not None
            await store.start()
        book, analytics, broker = _demo_state()
        if store is not None:  # as the service's: publishes the outbox to the broker, woken by commits
            relay = OutboxRelay(
                store.engine, broker, OutboxSettings(), own_broker=True, committer=store.committer
            )
            await relay.start()
        # As the generated code registers a servicer (registered methods included).
        servicer = OrderServicer(book, analytics, broker, store=store, relay=relay)
        orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)
    else:
        if options.kind == "ours":
            handlers, _ = _ours(options)
        elif options.kind == "cqrs":
            handlers = _cqrs(options)
        elif options.kind == "cqrs-orders":
            from bench.cqrs_servicer import handlers as cqrs_orders

            handlers = cqrs_orders(*_demo_state())
        else:
            handlers = _raw(options)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)  # as RillServer does
    port = server.add_insecure_port(f"127.0.0.1:{options.port}")
    await server.start()
    if options.gc_freeze:
        import gc

        gc.freeze()  # start-up objects leave the collector's generations
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(0)
    if options.kind == "handwritten" and store is not None:
        await relay.aclose()  # before the store, as the service's resources close
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._servers")
    parser.add_argument("kind", choices=("raw", "ours", "cqrs", "handwritten", "cqrs-orders"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--events", type=int, default=0, choices=(0, 2), help="domain events per item")
    parser.add_argument("--delivery", default="strict", choices=("strict", "overlapped"))
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--write", action="store_true", help="raw only: context.write instead of yield")
    parser.add_argument("--shape", default="full", choices=("full", "small"), help="raw only")
    parser.add_argument("--option", action="append", default=[], help="grpc server option KEY=INT")
    parser.add_argument("--stall-timeout", type=float, default=0.0, help="ours only: seconds; 0: none")
    parser.add_argument("--service-options", action="store_true", help="python -m server's grpc options")
    parser.add_argument("--store", action="store_true", help="handwritten: the service's default store")
    parser.add_argument(
        "--state-dir", default="state", help="handwritten --store: the SQLite file's directory"
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once serving")
    parser.add_argument("--convert", default="current", choices=("current", "fromdatetime"), help="ours only")
    parser.add_argument("--profile", help="write a cProfile of the whole serving to this file on stop")
    options = parser.parse_args()
    if options.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            _run(options)
        finally:
            profiler.disable()
            profiler.dump_stats(options.profile)
        return
    _run(options)


def _run(options: argparse.Namespace) -> None:
    if options.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(options))
    else:
        asyncio.run(_serve(options))


if __name__ == "__main__":
    main()
