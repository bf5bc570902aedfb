"""The ``rill`` command line (``python -m client``): call the service from a shell.

::

    rill [--address HOST:PORT] orders process ID... [--json]
    rill orders get ID [--json]
    rill files process ID... [--json]
    rill health [SERVICE] [--json]

Exit codes (as grpcurl: 64 + the gRPC status code for an error status):

====  ===================================================================
0     success
1     an unexpected failure (a bug: the traceback is printed)
2     bad usage: unknown option, missing argument, unreadable TLS file
4     ``health``: the service is not SERVING
65    CANCELLED (by the server or the network)
66    UNKNOWN
67    INVALID_ARGUMENT (the field violations are printed)
68    DEADLINE_EXCEEDED (``--timeout`` passed)
69    NOT_FOUND
71    PERMISSION_DENIED
72    RESOURCE_EXHAUSTED
76    UNIMPLEMENTED
77    INTERNAL
78    UNAVAILABLE (after the retries)
80    UNAUTHENTICATED
64+n  any other status code n
130   interrupted (Ctrl-C / SIGINT): the stream was cancelled on the wire
141   stdout was closed (e.g. ``| head``): the stream was cancelled on the wire
====  ===================================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import re
import secrets
import sys
import typing

import grpc
import pydantic
import typer
from rich.console import Console
from rich.text import Text

from client._calls import ResponseStream
from client._client import DEFAULT_ADDRESS, RillClient
from client._options import TLS, RetryPolicy
from client._render import Display, JsonLines, LiveProgress, PlainLines, describe
from client.exceptions import RillError

__all__ = ["EXIT_INTERRUPTED", "EXIT_NOT_SERVING", "EXIT_PIPE_CLOSED", "app", "exit_code_for"]

T = typing.TypeVar("T")

# A flag takes no value, but typer 0.29's help shows one as `--tls <bool>` unless given a metavar,
# and users then try `--tls true` (an unknown command 'true').
_FLAG = ""

EXIT_NOT_SERVING = 4
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141


def exit_code_for(code: grpc.StatusCode) -> int:
    """The exit code for an error status: 64 + its number, as grpcurl does."""
    return 64 + int(code.value[0])


app = typer.Typer(
    name="rill",
    help="Call the rill service: process orders and files as live streams, read orders back.",
    epilog="Exit codes: 0 ok, 2 bad usage, 4 not serving, 64+N gRPC status N "
    "(67 INVALID_ARGUMENT, 68 DEADLINE_EXCEEDED, 69 NOT_FOUND, 78 UNAVAILABLE), 130 Ctrl-C.",
    no_args_is_help=True,
    add_completion=False,
    # Locals would include the token; a traceback means a bug, so keep it plain and short.
    pretty_exceptions_show_locals=False,
)
orders_app = typer.Typer(help="Orders: process a batch as a stream, read one back.", no_args_is_help=True)
files_app = typer.Typer(help="Files: hash stored files as a stream.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")
app.add_typer(files_app, name="files")

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclasses.dataclass(frozen=True)
class Connection:
    """What every command connects with (the global options)."""

    address: str
    tls: TLS | None
    token: str | None
    metadata: tuple[tuple[str, str], ...]
    timeout: float | None
    request_id: str | None
    retry: RetryPolicy

    def client(self) -> RillClient:
        return RillClient(
            self.address,
            tls=self.tls,
            token=self.token,
            metadata=self.metadata,
            timeout=self.timeout,
            retry=self.retry,
            on_retry=_tell_retry,
        )


def _tell_retry(attempt: int, error: RillError, delay: float) -> None:
    _stderr.print(Text(f"{error}; attempt {attempt} in {delay:.2f} s", style="yellow"))


def _header(value: str) -> tuple[str, str]:
    key, sep, rest = value.partition(":")
    if not sep or not key.strip():
        raise typer.BadParameter(f"expected 'name: value', got {value!r}", param_hint="--header")
    return key.strip().lower(), rest.strip()


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def _trace_metadata(traceparent: str | None, trace: bool) -> tuple[tuple[str, str], ...]:
    """The W3C ``traceparent`` to send, so that one trace spans this call and the server's spans."""
    if traceparent is None and not trace:
        return ()
    if traceparent is None:
        trace_id = secrets.token_hex(16)
        traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        _stderr.print(Text(f"trace id {trace_id}", style="dim"))
    elif not _TRACEPARENT.match(traceparent):
        raise typer.BadParameter(
            f"expected 00-<32 hex>-<16 hex>-<2 hex>, got {traceparent!r}", param_hint="--traceparent"
        )
    return (("traceparent", traceparent),)


def _tls(
    tls: bool,
    cacert: pathlib.Path | None,
    cert: pathlib.Path | None,
    key: pathlib.Path | None,
    server_name: str | None,
) -> TLS | None:
    if not (tls or cacert or cert or key or server_name):
        return None
    try:
        return TLS.from_files(cacert, cert, key, server_name=server_name)
    except OSError as error:
        raise typer.BadParameter(f"cannot read {error.filename}: {error.strerror}") from None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--cert/--key") from None


@app.callback()
def connection(
    ctx: typer.Context,
    address: typing.Annotated[
        str,
        typer.Option("--address", "-a", envvar="RILL_ADDRESS", metavar="HOST:PORT", help="The service."),
    ] = DEFAULT_ADDRESS,
    timeout: typing.Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Deadline of the call (retries included). Default: none."),
    ] = None,
    token: typing.Annotated[
        str | None,
        typer.Option(envvar="RILL_TOKEN", help="Sent as 'authorization: Bearer TOKEN'."),
    ] = None,
    header: typing.Annotated[
        list[str] | None,
        typer.Option("--header", "-H", metavar="'NAME: VALUE'", help="Extra metadata; repeatable."),
    ] = None,
    request_id: typing.Annotated[
        str | None, typer.Option(help="The x-request-id to send (default: a new one per call).")
    ] = None,
    max_attempts: typing.Annotated[
        int,
        typer.Option(min=1, help="Attempts on UNAVAILABLE before anything was received (1: no retry)."),
    ] = RetryPolicy.max_attempts,
    tls: typing.Annotated[
        bool,
        typer.Option("--tls", metavar=_FLAG, help="Use TLS, verifying the server with the system's roots."),
    ] = False,
    cacert: typing.Annotated[
        pathlib.Path | None,
        typer.Option(metavar="PEM", help="Verify the server with this CA (implies --tls)."),
    ] = None,
    cert: typing.Annotated[
        pathlib.Path | None,
        typer.Option(metavar="PEM", help="Client certificate for mutual TLS (with --key)."),
    ] = None,
    key: typing.Annotated[
        pathlib.Path | None, typer.Option(metavar="PEM", help="Private key of --cert.")
    ] = None,
    server_name: typing.Annotated[
        str | None, typer.Option(help="Name to check the server's certificate against (implies --tls).")
    ] = None,
    traceparent: typing.Annotated[
        str | None,
        typer.Option(
            envvar="TRACEPARENT",
            metavar="W3C",
            help="Continue this trace: sent as 'traceparent' (00-TRACEID-SPANID-FLAGS).",
        ),
    ] = None,
    trace: typing.Annotated[
        bool,
        typer.Option("--trace", metavar=_FLAG, help="Start a new sampled trace and print its id on stderr."),
    ] = False,
) -> None:
    """Call the rill service: process orders and files as live streams, read orders back."""
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be more than 0 seconds", param_hint="--timeout")
    ctx.obj = Connection(
        address=address,
        tls=_tls(tls, cacert, cert, key, server_name),
        token=token,
        metadata=(*(_header(value) for value in header or ()), *_trace_metadata(traceparent, trace)),
        timeout=timeout,
        request_id=request_id,
        retry=RetryPolicy(max_attempts=max_attempts),
    )


def _fail(error: RillError, what: str | None = None) -> typing.NoReturn:
    """Print the status, message, field violations and request id; exit with the status's code."""
    message = what or error.message or "(no message)"
    _stderr.print(Text.assemble(("rill: ", "bold"), (error.code.name, "bold red"), ": ", message))
    for violation in error.violations:
        _stderr.print(Text.assemble("  ", (violation.field, "bold"), ": ", violation.description))
    if error.request_id:
        _stderr.print(Text(f"  request id: {error.request_id}", style="dim"))
    raise typer.Exit(exit_code_for(error.code))


def _pipe_closed() -> typing.NoReturn:
    # Python would complain again when it flushes stdout at exit: point stdout at /dev/null first.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(EXIT_PIPE_CLOSED)


def _stream_command(
    ctx: typer.Context,
    label: str,
    ids: list[str],
    json_output: bool,
    open_stream: typing.Callable[[RillClient, Connection], ResponseStream[pydantic.BaseModel]],
) -> None:
    """Run one streaming call, showing each result as it arrives; Ctrl-C cancels it."""
    connection = typing.cast(Connection, ctx.obj)
    stdout = Console(highlight=False)
    display: Display
    if json_output:
        display = JsonLines(sys.stdout)
    elif stdout.is_terminal:
        display = LiveProgress(stdout, total=len(ids), label=label)
    else:
        display = PlainLines(sys.stdout)
    received = 0

    async def consume() -> None:
        nonlocal received
        async with connection.client() as client, open_stream(client, connection) as stream:
            with display:
                async for result in stream:
                    received += 1
                    display.item(result)

    try:
        asyncio.run(consume())
    except KeyboardInterrupt:
        # asyncio.run cancelled consume(): leaving the `async with` blocks cancelled the call.
        _stderr.print(Text(f"rill: cancelled after {received} of {len(ids)} {label}", style="yellow"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        _pipe_closed()
    except RillError as error:
        _fail(error)


def _unary_command(ctx: typer.Context, call: typing.Callable[[RillClient], typing.Awaitable[T]]) -> T:
    connection = typing.cast(Connection, ctx.obj)

    async def run() -> T:
        async with connection.client() as client:
            return await call(client)

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        _stderr.print(Text("rill: cancelled", style="yellow"))
        raise typer.Exit(EXIT_INTERRUPTED) from None


OrderIds = typing.Annotated[
    list[str], typer.Argument(metavar="ID", show_default=False, help="Order ids, in processing order.")
]
FileIds = typing.Annotated[
    list[str],
    typer.Argument(metavar="ID", show_default=False, help="Paths under the service's storage root."),
]
JsonOption = typing.Annotated[
    bool, typer.Option("--json", metavar=_FLAG, help="One JSON object per line instead of the live display.")
]


@orders_app.command("process")
def orders_process(ctx: typer.Context, order_ids: OrderIds, json_output: JsonOption = False) -> None:
    """Process orders; each result is shown as soon as the service streams it."""
    _stream_command(
        ctx,
        "orders",
        order_ids,
        json_output,
        lambda client, connection: client.process_orders(order_ids, request_id=connection.request_id),
    )


@orders_app.command("get")
def orders_get(
    ctx: typer.Context,
    order_id: typing.Annotated[str, typer.Argument(metavar="ID")],
    json_output: JsonOption = False,
) -> None:
    """Show what the service recorded for a processed order."""
    connection = typing.cast(Connection, ctx.obj)
    try:
        order = _unary_command(
            ctx, lambda client: client.get_order(order_id, request_id=connection.request_id)
        )
    except RillError as error:
        _fail(error)
    if json_output:
        print(order.model_dump_json(), flush=True)
    else:
        Console(highlight=False, soft_wrap=True).print(describe(order))


@files_app.command("process")
def files_process(ctx: typer.Context, file_ids: FileIds, json_output: JsonOption = False) -> None:
    """Hash files held by the service (paths under its storage root), shown as each is done."""
    _stream_command(
        ctx,
        "files",
        file_ids,
        json_output,
        lambda client, connection: client.process_files(file_ids, request_id=connection.request_id),
    )


@app.command()
def health(
    ctx: typer.Context,
    service: typing.Annotated[
        str, typer.Argument(help="A service name, e.g. orders.v1.OrderService; empty: the server.")
    ] = "",
    json_output: JsonOption = False,
) -> None:
    """Ask the health service; exit 0 if SERVING, 4 otherwise."""
    connection = typing.cast(Connection, ctx.obj)
    try:
        status = _unary_command(ctx, lambda client: client.health(service, request_id=connection.request_id))
    except RillError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            _fail(error, f"the server knows no service named {service!r}")
        _fail(error)
    if json_output:
        print(json.dumps({"service": service, "status": status}), flush=True)
    else:
        print(status)
    if status != "SERVING":
        raise typer.Exit(EXIT_NOT_SERVING)
