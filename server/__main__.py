"""``python -m server``: run the service until SIGTERM or SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import signal
import sys

import pydantic

from mediator.exceptions import BrokerError
from server.app import create_server
from server.settings import load_settings

logger = logging.getLogger("server")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument(
        "--address", help="HOST:PORT to listen on (default 127.0.0.1:50051; port 0 picks one)"
    )
    parser.add_argument(
        "--http-address", help="HOST:PORT of the HTTP/SSE edge (default 127.0.0.1:8080; empty: off)"
    )
    parser.add_argument(
        "--config", type=pathlib.Path, help="a TOML config file (RILL_* variables override it)"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    overrides = {"address": args.address} if args.address else {}
    if args.http_address is not None:
        overrides["http_address"] = args.http_address
    settings = load_settings(args.config, **overrides)
    logging.getLogger().setLevel(settings.log_level)
    server = create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    # Parsed by tests and scripts that start the server on port 0.
    print(f"listening on {server.address}", flush=True)
    if server.http is not None:
        print(f"http on {server.http.address}", flush=True)
    await stop.wait()
    logger.info("signal received: shutting down")
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (pydantic.ValidationError, FileNotFoundError, NotADirectoryError, OSError, BrokerError) as error:
        print(f"rill server: cannot start: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
