"""The figures of the kill -9 scenario (docs/reliability.md): ``python -m tests.deploy.crash_figures``.

Runs :func:`tests.deploy.test_crash.crash_and_restart` ``--runs`` times on the machine's PostgreSQL and
RabbitMQ (a database and an exchange of its own each time, removed afterwards) and prints its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import pathlib
import tempfile

from tests.deploy.conftest import fresh_database, order_notifications
from tests.deploy.test_crash import crash_and_restart


async def main(runs: int) -> None:
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="rill-crash-") as tmp:
            notifications = order_notifications()
            async with fresh_database() as database_url, notifications:
                figures = await crash_and_restart(
                    pathlib.Path(tmp), database_url, notifications, before_cut=200, before_kill=1000
                )
        print(f"run {run + 1}:", dataclasses.asdict(figures), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.crash_figures", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
