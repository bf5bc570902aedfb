"""Print the notifications rill publishes to RabbitMQ, as they arrive.

    .venv/bin/python examples/rabbitmq/consume.py                      # every topic
    .venv/bin/python examples/rabbitmq/consume.py --topic files.processed --count 2

Binds a private queue (exclusive, deleted when this script exits) to the exchange, so it sees only
what is published while it runs. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import aio_pika
import aio_pika.abc

from mediator.message_brokers.rabbitmq import DEFAULT_EXCHANGE, mask_password


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/", help="the RabbitMQ URL")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE, help="the exchange rill publishes to")
    parser.add_argument("--topic", default="#", help="binding key: a topic, or a pattern with * and #")
    parser.add_argument("--count", type=int, default=0, help="exit after this many (0: run until Ctrl-C)")
    return parser.parse_args()


def _describe(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    envelope = json.loads(message.body)
    return (
        f"{message.routing_key}  {envelope['message_name']}  id={envelope['message_id']}  "
        f"occurred_at={envelope['occurred_at']}\n    payload={json.dumps(envelope['payload'])}"
    )


async def consume(url: str, exchange_name: str, topic: str, count: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    seen = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        seen += 1
        print(f"[{seen}] {_describe(message)}", flush=True)
        if count and seen >= count:
            stop.set()

    async with await aio_pika.connect(url, timeout=10) as connection:
        channel = await connection.channel()
        # Declared as rill declares it: whichever starts first creates it.
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=topic)
        await queue.consume(on_message, no_ack=True)
        print(
            f"waiting for notifications on exchange {exchange_name!r} (binding {topic!r}) "
            f"at {mask_password(url)}",
            flush=True,
        )
        await stop.wait()


def main() -> None:
    args = _parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(consume(args.url, args.exchange, args.topic, args.count))


if __name__ == "__main__":
    main()
