"""The service's per-order work without gRPC, in process: µs per item, by piece, vs the hand-written one.

What ``bench service`` compares end to end, with the transport taken away so that only the work
each server does per order is left, timed in one process (fastest of ``--rounds`` interleaved rounds
of ``--items`` items: the figure other load disturbs least; ``--callgrind`` counts instructions).

- ``hand-written``: ``bench.handwritten_servicer.OrderServicer.ProcessOrders`` iterated directly (the
  per-order body: OrderView recorded, analytics counted, the notification envelope to the in-memory
  broker, the result message with ``FromDatetime``).
- ``service``: the demo's streaming mediator as ``python -m server`` builds it (``server.demo.DemoApp``
  from the default ``Settings``, its state in memory, the metrics observer ``RillServer`` gives
  it), each item converted by the binding's converter (``BoundRpc.to_message``): the mediator,
  the demo's handlers and the conversion, without the adapter's write.
- the same with one default changed (``event_handler_timeout`` off, no observer, devnull broker), so
  that the difference to ``service`` is what that piece costs per item.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing

from bench import _common

Consume: typing.TypeAlias = typing.Callable[[list[str]], typing.Awaitable[int]]


class _Context:
    """What ``ProcessOrders`` touches of a grpc context on a valid request: nothing."""

    async def abort(self, code: object, details: str) -> typing.NoReturn:
        raise AssertionError(f"aborted: {details}")


def hand_written() -> Consume:
    from bench.handwritten_servicer import OrderServicer
    from mediator.message_brokers.memory import InMemoryMessageBroker
    from protos.orders.v1 import orders_pb2
    from server.limits import LimitSettings
    from server.services.orders import OrderAnalytics, OrderBook

    servicer = OrderServicer(
        OrderBook(LimitSettings().orders_kept), OrderAnalytics(), InMemoryMessageBroker()
    )
    context = _Context()

    async def consume(order_ids: list[str]) -> int:
        count = 0
        request = orders_pb2.ProcessOrdersRequest(order_ids=order_ids)
        async for _message in servicer.ProcessOrders(request, context):  # type: ignore[arg-type]
            count += 1
        return count

    return consume


def hand_written_with_models() -> Consume:
    """The hand-written body, plus the objects the spec's design makes per order: the two domain
    events, the notification (with its payload model) and the result as a pydantic ``Response``,
    converted by the binding's converter. No mediator: what the service's models cost by themselves."""
    import datetime

    from mediator.message_brokers.memory import InMemoryMessageBroker
    from mediator.message_brokers.protocol import Message
    from server.demo import DemoApp
    from server.limits import LimitSettings
    from server.services import orders
    from server.settings import Settings

    book, analytics = orders.OrderBook(LimitSettings().orders_kept), orders.OrderAnalytics()
    broker = InMemoryMessageBroker()
    binding = DemoApp(Settings(database_url="memory")).bindings[0]
    to_message = next(rpc for rpc in binding.rpcs if rpc.method.name == "ProcessOrders").to_message

    async def consume(order_ids: list[str]) -> int:
        count = 0
        for order_id in orders.ProcessOrdersCommand(order_ids=order_ids).order_ids:
            processed_at = datetime.datetime.now(datetime.UTC)
            customer_id = f"customer_{order_id}"
            processed = orders.OrderProcessedEvent(
                order_id=order_id, customer_id=customer_id, total_amount=100.0, processed_at=processed_at
            )
            counted = orders.OrderAnalyticsEvent(order_id=order_id, category="electronics")
            notification = orders.OrderProcessedNotification(
                payload=orders.OrderSummary(order_id=order_id, customer_id=customer_id, total_amount=100.0)
            )
            book.record(
                orders.OrderView(
                    order_id=processed.order_id,
                    customer_id=processed.customer_id,
                    total_amount=processed.total_amount,
                    status=processed.status,
                    processed_at=processed.processed_at,
                )
            )
            analytics.per_category[counted.category] += 1
            await broker.send_message(Message.from_event(notification))
            result = orders.OrderProcessedResult(
                order_id=order_id, status="processed", processed_at=processed_at, items_count=3
            )
            to_message(result)
            count += 1
        return count

    return consume


def served(*, timeout: bool = True, observer: bool = True, broker: str = "memory") -> Consume:
    from mediator.message_brokers.protocol import broker_name
    from server.demo import DemoApp
    from server.metrics import Metrics
    from server.services.orders import ProcessOrdersCommand
    from server.settings import ServiceSettings, Settings

    orders = ServiceSettings() if timeout else ServiceSettings(event_handler_timeout=None)
    # The demo's state in memory: what is compared is the per-item work, not a database's commits.
    app = DemoApp(Settings(broker=broker, orders=orders, database_url="memory"))
    binding = app.bindings[0]
    mediator = binding.streaming
    assert mediator is not None
    if observer:  # as RillServer does for every mediator it serves
        mediator.observer = Metrics().mediator("orders", broker_name(mediator.message_broker))
    bound = next(rpc for rpc in binding.rpcs if rpc.method.name == "ProcessOrders")
    to_message = bound.to_message

    async def consume(order_ids: list[str]) -> int:
        count = 0
        items = mediator.stream(ProcessOrdersCommand(order_ids=order_ids))
        try:
            async for item in items:
                to_message(item)
                count += 1
        finally:
            await items.aclose()
        return count

    return consume


PATHS: dict[str, typing.Callable[[], Consume]] = {
    "hand-written (per-order body of the servicer)": hand_written,
    "hand-written with the service's models (no mediator)": hand_written_with_models,
    "service (mediator + demo handlers + to_message)": served,
    "service, event_handler_timeout off": lambda: served(timeout=False),
    "service, no observer (metrics off)": lambda: served(observer=False),
    "service, devnull broker": lambda: served(broker="devnull"),
    "service, all three": lambda: served(timeout=False, observer=False, broker="devnull"),
}


@dataclasses.dataclass
class Timed:
    label: str
    consume: Consume
    seconds: list[float] = dataclasses.field(default_factory=list)


async def measure(paths: list[Timed], items: int, rounds: int) -> None:
    batches = [[f"o{round_}-{index}" for index in range(items)] for round_ in range(rounds + 1)]
    for path in paths:  # warm-up and check
        if (got := await path.consume(batches[-1])) != items:
            raise AssertionError(f"{path.label}: {got} items, {items} expected")
    for round_ in range(rounds):
        shift = round_ % len(paths)
        for path in paths[shift:] + paths[:shift]:
            started = time.perf_counter()
            await path.consume(batches[round_])
            path.seconds.append(time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service_work", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=5_000, help="items per round (default 5,000)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; the fastest is reported (default 9)")
    parser.add_argument("--loop", default="uvloop", choices=("asyncio", "uvloop"), help="as the servers run")
    parser.add_argument("--only", help="comma-separated path numbers (1-based), in the table's order")
    options = parser.parse_args(argv)
    labels = list(PATHS)
    chosen = labels
    if options.only:
        wanted = {int(number) - 1 for number in options.only.split(",")}
        chosen = [label for index, label in enumerate(labels) if index in wanted]
    for line in _common.environment():
        print(line)
    paths = [Timed(label, PATHS[label]()) for label in chosen]
    with _common.Noise(lambda: []) as noise:
        _common.run(measure(paths, options.items, options.rounds), options.loop)
    print(
        f"runs:     {options.rounds} rounds of {options.items:,} items, interleaved; fastest; {options.loop}"
    )
    print(noise.line)
    print()

    def fastest(prefix: str) -> float | None:
        found = [path for path in paths if path.label.startswith(prefix)]
        return min(found[0].seconds) / options.items if found else None

    hand, base = fastest("hand-written"), fastest("service (")
    rows = []
    for path in paths:
        each = min(path.seconds) / options.items
        rows.append(
            (
                path.label,
                f"{each * 1e6:.1f}",
                "" if hand is None else f"{each / hand:.2f}",
                "" if base is None or path.label.startswith("hand") else f"{(base - each) * 1e6:+.1f}",
            )
        )
    print(_common.table(("path", "µs/item", "x hand", "saved vs service µs"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
