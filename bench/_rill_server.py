"""The real service in its own process, with its counters on demand: ``python -m bench._rill_server``.

Prints ``listening on HOST:PORT``; then every line ``stats`` on stdin is answered with one JSON line
(orders recorded by the OrderProcessedEvent handler, OrderAnalyticsEvent runs, calls in flight, the
process's peak RSS); ``stop`` (or the end of stdin) stops the server with a grace of 0 and exits after
printing the stats once more. Used by bench/load.py and bench/slow_client.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import typing

from server import RillServer, Settings, create_server


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM of a process, in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def stats(server: RillServer) -> dict[str, typing.Any]:
    return {
        "orders_recorded": server.handlers.order_book().recorded,  # it keeps the last limits.orders_kept
        "analytics_events": sum(server.handlers.order_analytics().per_category.values()),
        "calls_active": server.calls.active,
        "peak_rss_kib": peak_rss_kib(),
    }


async def serve(options: argparse.Namespace) -> None:
    # + RILL_* variables; in-memory read models unless RILL_DATABASE_URL names a store ("": embedded)
    database_url = os.environ.get("RILL_DATABASE_URL", "memory")
    settings = Settings(address="127.0.0.1:0", http_address="", broker="devnull", database_url=database_url)
    if options.stall_timeout is not None:
        stall_timeout = None if options.stall_timeout == "off" else float(options.stall_timeout)
        limits = settings.limits.model_copy(update={"stall_timeout": stall_timeout})
        settings = settings.model_copy(update={"limits": limits})
    logging.getLogger().setLevel(settings.log_level if options.log else logging.WARNING)
    server = create_server(settings)
    await server.start()
    print(f"listening on {server.address}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "stop":
                break
            print(json.dumps(stats(server)), flush=True)
    finally:
        await server.stop(grace=0)
        print(json.dumps(stats(server)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._rill_server")
    parser.add_argument("--stall-timeout", help="limits.stall_timeout: seconds, or 'off'")
    parser.add_argument("--log", action="store_true", help="log at RILL_LOG_LEVEL (default: warnings only)")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
