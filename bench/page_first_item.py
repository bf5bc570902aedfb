"""First-item latency of the browser page (examples/web) over Connect and gRPC-Web, in Chromium.

One ``python -m server`` (devnull broker, log level WARNING, the page's origin allowed by
``RILL_CORS__ALLOW_ORIGINS``) and the page on its own origin (served by this process). Chromium
(Debian's, driven by playwright-core: ``tests/browser/connect_page.mjs --runs N``) loads the page
once per protocol and presses Process ``--runs`` times (default 30) with ``--items`` ids (default
5); the page measures, with ``performance.now()``, from the click to the first result shown (the
call's set-up, the request, the handler's first item, decoding and one DOM row). Median and p90
over the runs; the first run of each protocol (a new connection, cold code paths) is left out.
Needs ``make web`` and Chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from bench import _common
from server.http import HttpServer

WEB = _common.REPO / "examples" / "web"
DRIVER = _common.REPO / "tests" / "browser" / "connect_page.mjs"
PROTOCOLS = {"connect": "Connect, JSON", "connect-proto": "Connect, binary", "grpc-web": "gRPC-Web"}


async def first_items(page_url: str, protocol: str, ids: str, runs: int) -> list[float]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed (and `make web`, `make browser`)")
    process = await asyncio.create_subprocess_exec(
        node, str(DRIVER), page_url, ids, "--protocol", protocol, "--runs", str(runs + 1),
        cwd=_common.REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=300)
    if process.returncode != 0:
        raise RuntimeError(stderr.decode())
    seen = json.loads(stdout.decode().strip().splitlines()[-1])
    if seen["state"] != "complete":
        raise AssertionError(seen)
    return [float(first.removesuffix(" ms")) for first in seen["firsts"][1:]]


async def measure(items: int, runs: int) -> dict[str, list[float]]:
    site = HttpServer(Starlette(routes=[Mount("/", StaticFiles(directory=WEB, html=True))]), "127.0.0.1:0")
    await site.start()
    os.environ.update(
        {
            "RILL_BROKER": "devnull",
            "RILL_LOG_LEVEL": "WARNING",
            "RILL_CORS__ALLOW_ORIGINS": json.dumps([f"http://{site.address}"]),
        }
    )
    server = _common.ServerProcess(
        "service", ["-m", "server", "--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"],
        ready_prefix="listening on ",
    )  # fmt: skip
    try:
        assert server.process.stdout is not None
        http = server.process.stdout.readline().removeprefix("http on ").strip()
        page_url = f"http://{site.address}/?edge=http://{http}"
        ids = " ".join(f"order{i}" for i in range(items))
        return {protocol: await first_items(page_url, protocol, ids, runs) for protocol in PROTOCOLS}
    finally:
        server.stop()
        await site.stop(grace=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.page_first_item", description=(__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--items", type=int, default=5, help="order ids per call (default 5)")
    parser.add_argument("--runs", type=int, default=30, help="calls per protocol (default 30)")
    options = parser.parse_args(argv)
    if not (WEB / "dist" / "app.js").exists():
        print("examples/web/dist/app.js is missing: run `make web`", file=sys.stderr)
        return 2
    for line in _common.environment((*_common.PACKAGES, "connectrpc")):
        print(line)
    results = asyncio.run(measure(options.items, options.runs))
    print(f"runs:     {options.runs} calls per protocol of {options.items} ids, after one warm-up call")
    print()
    rows = [
        (
            label,
            f"{_common.median(results[key]):.1f}",
            f"{_common.percentile(results[key], 0.9):.1f}",
        )
        for key, label in PROTOCOLS.items()
    ]
    print(_common.table(("page over", "first item, median ms", "p90 ms"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
