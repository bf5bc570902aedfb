"""Group commit: N concurrent streams through the demo's mediator, in memory vs through the store.

Each path runs the demo's OrderService stream mediator (``server.demo.DemoApp``: its handlers, its
settings), in-process, no gRPC: ``--streams`` concurrent ``ProcessOrders`` streams of ``--items``
orders each, strict delivery, every item consumed as it comes. Paths:

- ``memory``: ``database_url = "memory"`` (the bounded in-memory OrderBook, the devnull broker):
  the baseline.
- ``sqlite``: the embedded default (an SQLite file in a temporary state directory, WAL,
  ``synchronous=FULL``): one unit per item (the order row and its outbox row), group-committed.
- ``sqlite-1``: the same with ``store.commit_max_units = 1``: one transaction per item, what it
  costs without grouping (fewer items: ``--ungrouped-items`` per stream).
- ``postgresql`` / ``postgresql-1``: the same on a database created for the run on
  ``--postgresql`` (dropped afterwards); ``--no-postgresql`` skips them.

Printed per path: items/s (median over ``--rounds``), transactions per item (counted by a
SQLAlchemy ``commit`` listener) and the ratio of items/s to ``memory`` in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import statistics
import tempfile
import time
import typing
import uuid

import asyncpg
import sqlalchemy as sa

from bench._common import environment
from server.demo import DemoApp
from server.services.orders import ProcessOrdersCommand
from server.settings import Settings
from server.store.settings import StoreSettings


@contextlib.asynccontextmanager
async def postgresql_database(admin_url: str) -> typing.AsyncIterator[str]:
    name = f"rill_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_path(settings: Settings, streams: int, items: int, prefix: str) -> tuple[float, int]:
    """(items/s, transactions) of one run of ``streams`` x ``items`` on a demo built from ``settings``."""
    demo = DemoApp(settings)
    commits: list[int] = []
    if demo.store is not None:
        await demo.store.start()
        sa.event.listen(demo.store.engine.sync_engine, "commit", lambda connection: commits.append(1))
    mediator = demo.bindings[0].streaming
    assert mediator is not None

    async def one(stream: int) -> int:
        ids = [f"{prefix}-{stream}-{item}" for item in range(items)]
        received = 0
        async for _ in mediator.stream(ProcessOrdersCommand(order_ids=ids)):
            received += 1
        return received

    try:
        started = time.perf_counter()
        received = sum(await asyncio.gather(*(one(stream) for stream in range(streams))))
        elapsed = time.perf_counter() - started
    finally:
        if demo.store is not None:
            await demo.store.aclose()
    assert received == streams * items
    return received / elapsed, len(commits)


async def bench(options: argparse.Namespace) -> None:
    state = pathlib.Path(tempfile.mkdtemp(prefix="rill-bench-"))
    base: dict[str, typing.Any] = {"broker": "devnull", "orders": {"max_concurrent_event_handlers": 100}}
    ungrouped = StoreSettings(commit_max_units=1)
    async with contextlib.AsyncExitStack() as stack:
        paths: dict[str, tuple[Settings, int]] = {
            "memory": (Settings(**base, database_url="memory"), options.items),
            "sqlite": (Settings(**base, database_url="", state_dir=state / "grouped"), options.items),
            "sqlite-1": (
                Settings(**base, database_url="", state_dir=state / "one", store=ungrouped),
                options.ungrouped_items,
            ),
        }
        if options.postgresql:
            grouped_db = await stack.enter_async_context(postgresql_database(options.postgresql))
            one_db = await stack.enter_async_context(postgresql_database(options.postgresql))
            paths["postgresql"] = (Settings(**base, database_url=grouped_db), options.items)
            paths["postgresql-1"] = (
                Settings(**base, database_url=one_db, store=ungrouped),
                options.ungrouped_items,
            )
        rates: dict[str, list[float]] = {name: [] for name in paths}
        ratios: dict[str, list[float]] = {name: [] for name in paths}
        per_item: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(options.rounds):
            results: dict[str, float] = {}
            for name, (settings, items) in paths.items():
                rate, transactions = await run_path(settings, options.streams, items, f"r{round_}")
                results[name] = rate
                rates[name].append(rate)
                per_item[name].append(transactions / (options.streams * items))
            for name in paths:
                ratios[name].append(results[name] / results["memory"])
    print("\n".join(environment(("rill-grpc", "sqlalchemy", "aiosqlite", "asyncpg", "alembic"))))
    print(f"{options.streams} concurrent streams, strict delivery; median of {options.rounds} rounds\n")
    print("| path | items per stream | items/s | transactions per item | items/s vs memory |")
    print("|---|---:|---:|---:|---:|")
    for name, (_, items) in paths.items():
        print(
            f"| {name} | {items} | {statistics.median(rates[name]):,.0f} | "
            f"{statistics.median(per_item[name]):.4f} | {statistics.median(ratios[name]):.2f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench group_commit", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--ungrouped-items", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgresql", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgresql", dest="postgresql", action="store_const", const="")
    asyncio.run(bench(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
