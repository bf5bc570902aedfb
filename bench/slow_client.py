"""Slow client: how far the handler runs ahead of a client that reads one message a second.

``python -m bench slow_client [--reads 5] [--interval 1.0] [--stall-timeout 2]``. Each case starts
the real service in its own process (``bench._rill_server``), asks ProcessOrders for 10,000 orders
with 128-character ids (~160 bytes a message, ~1.6 MB in all), reads one message every
``--interval`` seconds, and after each read asks the server how many items its handler has produced
(the OrderProcessedEvent handler's count: in strict delivery an item's events are handled before it is
written). Then it reads the rest as fast as it can and reports how the stream ended.

Cases: grpc.aio's default client (BDP probing grows its flow-control window) and a client with
``grpc.http2.bdp_probe=0`` (64 KiB window), each against a server without and with
``limits.stall_timeout``. See docs/reliability.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import asyncio
import typing

import grpc

from bench._process import RillProcess
from protos.orders.v1 import orders_pb2, orders_pb2_grpc

ORDERS = 10_000
ID_LENGTH = 128


async def one_case(
    options: argparse.Namespace, client_options: list[tuple[str, typing.Any]], stall_timeout: float | None
) -> dict[str, typing.Any]:
    args = ["--stall-timeout", "off" if stall_timeout is None else str(stall_timeout)]
    async with RillProcess(*args) as server:
        ids = [f"{index:0{ID_LENGTH}d}" for index in range(ORDERS)]
        request = orders_pb2.ProcessOrdersRequest(order_ids=ids)
        async with grpc.aio.insecure_channel(server.address, options=client_options) as channel:
            call = orders_pb2_grpc.OrderServiceStub(channel).ProcessOrders(request)
            produced = []
            size = 0
            for _ in range(options.reads):
                # read() is typed object (a message or EOF): the stream has many more to come.
                message = typing.cast(orders_pb2.OrderProcessedResult, await call.read())
                size = message.ByteSize()
                await asyncio.sleep(options.interval)  # the slow reader: this is the measured behaviour
                produced.append((await server.stats())["orders_recorded"])
            received = options.reads
            try:
                async with asyncio.timeout(120):
                    while await call.read() is not grpc.aio.EOF:
                        received += 1
                ending = "OK"
            except grpc.aio.AioRpcError as error:
                ending = error.code().name
        await server.stop()
    return {"produced": produced, "size": size, "received": received, "ending": ending}


async def run(options: argparse.Namespace) -> int:
    clients = {
        "grpc.aio default (BDP probing)": [],
        "grpc.aio, grpc.http2.bdp_probe=0": [("grpc.http2.bdp_probe", 0)],
    }
    print(
        f"request: {ORDERS:,} orders, ids of {ID_LENGTH} chars; the client reads 1 message every "
        f"{options.interval:g} s, {options.reads} times, then the rest at full speed"
    )
    print()
    print(f"{'client':34} {'stall_timeout':>13}  {'produced after each read':32} {'ahead':>16}  ending")
    for stall_timeout in (None, options.stall_timeout):
        for name, client_options in clients.items():
            result = await one_case(options, client_options, stall_timeout)
            ahead = result["produced"][-1] - options.reads
            after = ", ".join(f"{count:,}" for count in result["produced"])
            print(
                f"{name:34} {('off' if stall_timeout is None else f'{stall_timeout:g} s'):>13}  {after:32} "
                f"{ahead:>6,} = {ahead * result['size'] / 1024:>5,.0f} KiB  "
                f"{result['ending']} after {result['received']:,} items",
                flush=True,
            )
    return 0


SERVER_OPTIONS: dict[str, list[tuple[str, typing.Any]]] = {
    "(none)": [],
    "grpc.http2.write_buffer_size=0": [("grpc.http2.write_buffer_size", 0)],
    "grpc.http2.bdp_probe=0": [("grpc.http2.bdp_probe", 0)],
    "grpc.http2.lookahead_bytes=1024": [("grpc.http2.lookahead_bytes", 1024)],
    "grpc.max_send_message_length=1024": [("grpc.max_send_message_length", 1024)],
}


async def server_options_case(
    options: argparse.Namespace,
    server_options: list[tuple[str, typing.Any]],
    client_options: list[tuple[str, typing.Any]],
) -> list[int]:
    """A bare grpc.aio server (in this process) writing small messages with ``await context.write``."""
    message = orders_pb2.OrderProcessedResult(order_id="o12345", status="processed", items_count=3)
    produced = 0

    async def serve(request: bytes, context: grpc.aio.ServicerContext[typing.Any, typing.Any]) -> None:
        nonlocal produced
        for _ in range(1_000_000):
            await context.write(message)
            produced += 1

    handler: grpc.RpcMethodHandler[bytes, orders_pb2.OrderProcessedResult] = (
        grpc.unary_stream_rpc_method_handler(
            serve,
            request_deserializer=None,
            response_serializer=orders_pb2.OrderProcessedResult.SerializeToString,
        )
    )
    server = grpc.aio.server(options=server_options)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("orders.v1.OrderService", {"ProcessOrders": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    after = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=client_options) as channel:
            method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                "/orders.v1.OrderService/ProcessOrders", request_serializer=None, response_deserializer=None
            )
            call = method(b"")
            for _ in range(options.reads):
                await call.read()
                await asyncio.sleep(options.interval)
                after.append(produced)
            call.cancel()
    finally:
        await server.stop(grace=0)
    return after


async def run_server_options(options: argparse.Namespace) -> int:
    size = orders_pb2.OrderProcessedResult(order_id="o12345", status="processed", items_count=3).ByteSize()
    print(
        f"a bare grpc.aio server writing {size}-byte messages; "
        f"the client reads one every {options.interval:g} s"
    )
    print()
    print(f"{'server option':34} {'client':18} produced after each read")
    for server_name, server_options in SERVER_OPTIONS.items():
        for client_name, client_options in (("default", []), ("bdp_probe=0", [("grpc.http2.bdp_probe", 0)])):
            after = await server_options_case(options, server_options, client_options)
            print(
                f"{server_name:34} {client_name:18} {', '.join(f'{count:,}' for count in after)}", flush=True
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench slow_client", description=__doc__)
    parser.add_argument("--reads", type=int, default=5, help="messages read slowly (1..60)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between slow reads")
    parser.add_argument("--stall-timeout", type=float, default=2.0, help="the server's limits.stall_timeout")
    parser.add_argument(
        "--server-options",
        action="store_true",
        help="instead: what server-side grpc options do to the run-ahead (a bare grpc.aio server)",
    )
    options = parser.parse_args(argv)
    if not 1 <= options.reads <= 60 or not 0 < options.interval <= 10:
        parser.error("--reads 1..60, --interval in (0, 10]")
    return asyncio.run(run_server_options(options) if options.server_options else run(options))


if __name__ == "__main__":
    raise SystemExit(main())
