"""``python -m server``: run the service until SIGTERM or SIGINT, then drain and exit 0.

``--workers N`` runs N server processes on one port (``SO_REUSEPORT``: the kernel spreads connections
over them). Only they share it: a server started on a port that is in use (by another rill server or
anything else) exits 2 naming the address, instead of silently taking half of its connections. The
workers are started before any gRPC object exists in this process, which only supervises:
SIGTERM/SIGINT are passed on to every worker, and it exits 0 when they all did. gRPC is served by
every worker; the HTTP/SSE edge by worker 0 only. The event loop is uvloop when it is
installed (``--loop asyncio`` to opt out): it serves more messages per CPU second (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import typing

import pydantic

from mediator.exceptions import BrokerError
from server.app import create_server
from server.apps import AppError, load_services
from server.logs import configure_logging
from server.settings import load_settings
from server.store.errors import StoreError

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
        "--metrics-address", help="HOST:PORT serving /metrics on its own (default: none; empty: off)"
    )
    parser.add_argument(
        "--config", type=pathlib.Path, help="a TOML config file (RILL_* variables override it)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT; default 1)"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop (auto: uvloop if installed)",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve these service bindings (or a callable taking the Settings) instead of the demo",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    overrides = {"address": args.address} if args.address else {}
    if args.http_address is not None:
        overrides["http_address"] = args.http_address
    if args.metrics_address is not None:
        overrides["metrics_address"] = args.metrics_address
    settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    # Workers of one supervisor share the port; a server on its own must have it to itself.
    server = create_server(
        settings,
        services=load_services(args.app) if args.app else None,
        reuse_port=args.worker_index is not None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    # Parsed by tests and scripts that start the server on port 0.
    worker = "" if args.worker_index is None else f" (worker {args.worker_index}, pid {os.getpid()})"
    print(f"listening on {server.address}{worker}", flush=True)
    if server.http is not None:
        print(f"http on {server.http.address}", flush=True)
    if server.metrics_http is not None:
        print(f"metrics on {server.metrics_http.address}", flush=True)
    await stop.wait()
    logger.info("signal received: shutting down")
    await server.stop()


def _loop_factory(choice: str) -> typing.Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("rill server: --loop uvloop, but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def _exit_with_supervisor() -> None:
    # In a worker, before exec: a supervisor killed outright (SIGKILL: nothing to pass on) still
    # stops its workers, which get SIGTERM and drain.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _check_port_free(address: str) -> None:
    """OSError naming ``address`` if something listens there already (the workers would share it)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family, kind, proto, _, where = socket.getaddrinfo(
        host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR: connections in TIME_WAIT from an earlier run do not count; a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as error:
            raise OSError(f"cannot listen on {address}: {error.strerror or error}") from None


def _supervise(argv: list[str], args: argparse.Namespace) -> int:
    """Start ``args.workers`` workers on one port, pass SIGTERM/SIGINT on; 0 if they all exit 0."""
    overrides = {"address": args.address} if args.address else {}
    try:
        settings = load_settings(args.config, **overrides)
        if args.app:
            load_services(args.app)  # a wrong --app fails here, once, not in every worker
    except (pydantic.ValidationError, FileNotFoundError, AppError) as error:
        print(f"rill server: cannot start: {error}", file=sys.stderr)
        return 2
    if not hasattr(socket, "SO_REUSEPORT"):
        print("rill server: --workers needs SO_REUSEPORT (Linux)", file=sys.stderr)
        return 2
    if settings.address.endswith(":0"):
        print("rill server: --workers needs a fixed port: port 0 cannot be shared", file=sys.stderr)
        return 2
    try:
        _check_port_free(settings.address)
    except OSError as error:
        print(f"rill server: cannot start: {error}", file=sys.stderr)
        return 2
    workers: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for index in range(args.workers):
        http = [] if index == 0 else ["--http-address", ""]  # the HTTP edge lives in worker 0 only
        command = [sys.executable, "-m", "server", *argv, *http, "--worker-index", str(index)]
        workers.append(subprocess.Popen(command, preexec_fn=_exit_with_supervisor))  # no threads here
    while any(worker.poll() is None for worker in workers):
        if not stopping and any(worker.returncode is not None for worker in workers):
            logger.error("a worker exited on its own: stopping the others")
            stop_all()
        time.sleep(0.1)
    codes = [worker.returncode for worker in workers]
    logger.info("workers exited: %s", ", ".join(map(str, codes)))
    return 0 if not any(codes) and stopping else 1


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    worker = "" if args.worker_index is None else f"worker {args.worker_index} pid %(process)d "
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {worker}%(name)s: %(message)s")
    if args.workers > 1 and args.worker_index is None:
        sys.exit(_supervise(argv, args))
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            runner.run(serve(args))
    except (
        pydantic.ValidationError,
        FileNotFoundError,
        NotADirectoryError,
        OSError,
        BrokerError,
        AppError,
        StoreError,  # the database cannot be reached or migrated
    ) as error:
        print(f"rill server: cannot start: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
