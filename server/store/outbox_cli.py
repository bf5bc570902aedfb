"""``python -m server outbox``: look at the outbox and replay what the relay gave up.

::

    python -m server outbox list [--state pending|dead|published] [--limit N]
    python -m server outbox replay --all-dead
    python -m server outbox replay MESSAGE_ID [MESSAGE_ID ...]

It reads the server's settings (``--config FILE``, ``RILL_DATABASE_URL``, ``RILL_STATE_DIR``, ...),
so it looks at the store the server uses. ``replay`` makes dead (or published) rows pending again,
with no attempts and due now: a running relay publishes them within its ``poll_interval``. It
changes nothing when one of the ids is unknown (exit 1); bad arguments or settings exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import pathlib
import sys
import typing
import uuid

import pydantic
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store import outbox_rows
from server.store.errors import StoreUnavailable
from server.store.outbox_rows import OutboxRow
from server.store.store import Store

__all__ = ["main", "render_table"]

EXIT_UNKNOWN = 1
EXIT_USAGE = 2
ERROR_WIDTH = 60


class CliError(Exception):
    """A problem the user can fix (settings, missing store): printed, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server outbox", description="Look at the outbox and replay dead notifications."
    )
    parser.add_argument("--config", type=pathlib.Path, help="the server's TOML config file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,replay}")
    listing = commands.add_parser(
        "list", help="rows, oldest first: id, name, topic, state, attempts, age, error"
    )
    listing.add_argument("--state", choices=("pending", "dead", "published"), help="only rows in this state")
    listing.add_argument("--limit", type=_positive, default=50, help="rows shown at most (default 50)")
    replay = commands.add_parser("replay", help="make dead rows pending again (attempts 0, due now)")
    replay.add_argument("message_ids", nargs="*", type=_message_id, metavar="MESSAGE_ID")
    replay.add_argument("--all-dead", action="store_true", help="every dead row")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _message_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a message id (a UUID): {text!r}") from None


def main(argv: typing.Sequence[str]) -> int:
    """Run the command in ``argv`` (what follows ``outbox``); the exit status."""
    parser = _parser()
    args = parser.parse_args(list(argv))  # exits 2 on bad arguments
    if args.command == "replay" and bool(args.message_ids) == bool(args.all_dead):
        parser.error("replay takes --all-dead or message ids (one of them)")
    try:
        return asyncio.run(_run(args, _store(args.config)))
    except CliError as error:
        print(f"rill outbox: {error}", file=sys.stderr)
        return EXIT_USAGE


def _store(config: pathlib.Path | None) -> Store:
    """The store the server's settings name (not opened yet)."""
    # Imported here: server.settings imports this package's settings module, not the reverse.
    from server.settings import load_settings

    try:
        settings = load_settings(config)
    except (pydantic.ValidationError, FileNotFoundError) as error:
        raise CliError(f"bad settings: {error}") from None
    store = Store.from_settings(settings.database_url, settings.state_dir, settings.store)
    if store is None:
        raise CliError("database_url is 'memory': there is no store, and so no outbox")
    if store.embedded and not pathlib.Path(store.url.database or "").exists():
        raise CliError(
            f"no store at {store.url.database}: the server has not run with this state_dir "
            "(set RILL_STATE_DIR or RILL_DATABASE_URL as the server has them)"
        )
    return store


async def _run(args: argparse.Namespace, store: Store) -> int:
    try:
        await store.start()
    except StoreUnavailable as error:
        raise CliError(str(error)) from None
    try:
        if args.command == "list":
            async with store.reader.connect() as connection:
                rows = await outbox_rows.list_rows(connection, args.state, args.limit)
            print(render_table(rows, outbox_rows.now()) if rows else _nothing(args.state))
            return 0
        return await _replay(store.engine, args.message_ids or None)
    finally:
        await store.aclose()


async def _replay(engine: AsyncEngine, message_ids: list[uuid.UUID] | None) -> int:
    async with engine.begin() as connection:
        if message_ids is not None:
            states = await outbox_rows.states_of(connection, message_ids)
            unknown = [each for each in message_ids if each not in states]
            if unknown:
                for each in unknown:
                    print(f"rill outbox: unknown message id {each}", file=sys.stderr)
                print("rill outbox: nothing replayed", file=sys.stderr)
                return EXIT_UNKNOWN
            for each in message_ids:
                if states[each] == "pending":
                    print(f"{each}: pending already")
        replayed = await outbox_rows.replay(connection, outbox_rows.now(), message_ids)
    print(f"replayed {replayed} message{'' if replayed == 1 else 's'}: pending, due now")
    return 0


def _nothing(state: str | None) -> str:
    return f"no {state} rows in the outbox" if state else "the outbox is empty"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86_400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86_400}d{seconds % 86_400 // 3600:02d}h"


def _one_line(text: str | None) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= ERROR_WIDTH else flat[: ERROR_WIDTH - 1] + "…"


def render_table(rows: typing.Sequence[OutboxRow], at: datetime.datetime) -> str:
    """``rows`` as an aligned text table (age: since the row was written)."""
    header = ("MESSAGE ID", "NAME", "TOPIC", "STATE", "ATTEMPTS", "AGE", "LAST ERROR")
    lines = [header] + [
        (
            str(row.message_id),
            row.message_name,
            row.topic,
            row.state,
            str(row.attempts),
            _age((at - row.created_at).total_seconds()),
            _one_line(row.last_error),
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
