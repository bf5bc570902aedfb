"""The web page in a real browser: headless Chromium driven by Playwright, against the real edge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import typing

import pytest

from server import RillServer
from server.calls import CallRegistry
from server.http import HttpServer, create_http_app
from tests.server.gated import Probe, fresh_probe, gated_binding
from tests.server.running import Record, running_binding

Process: typing.TypeAlias = asyncio.subprocess.Process

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(__file__).with_name("page.mjs")
CHROMIUM = pathlib.Path("/usr/bin/chromium")


def _require_browser() -> str:
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node", node is not None),
            ("Debian's chromium (/usr/bin/chromium)", CHROMIUM.exists()),
            ("node_modules/playwright-core", (REPO / "node_modules" / "playwright-core").exists()),
        )
        if not present
    ]
    if missing:
        reason = f"missing {', '.join(missing)}: `make test` installs them"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    assert node is not None
    return node


async def drive(url: str, ids: str, *args: str) -> dict[str, typing.Any]:
    process = await asyncio.create_subprocess_exec(
        _require_browser(),
        str(SCRIPT),
        url,
        ids,
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    return typing.cast(dict[str, typing.Any], json.loads(stdout.decode().strip().splitlines()[-1]))


async def test_a_person_processes_orders_and_sees_every_row_and_a_full_bar(
    http_service: RillServer, tmp_path: pathlib.Path
) -> None:
    assert http_service.http is not None
    # RILL_SCREENSHOT=docs/page.png refreshes the README's picture.
    screenshot = pathlib.Path(os.environ.get("RILL_SCREENSHOT", tmp_path / "page.png"))
    seen = await drive(f"http://{http_service.http.address}/", "a b c d e", "--screenshot", str(screenshot))
    assert seen["state"] == "complete"
    assert seen["rows"] == ["a", "b", "c", "d", "e"]
    assert seen["bar"] == {"value": 5, "max": 5}
    assert seen["count"] == "5 / 5"
    assert seen["elapsed"].endswith(" s")
    assert screenshot.read_bytes().startswith(b"\x89PNG")  # noqa: ASYNC240 - a small local file


async def test_a_refused_request_shows_the_status_and_the_violation(http_service: RillServer) -> None:
    assert http_service.http is not None
    seen = await drive(f"http://{http_service.http.address}/", "ok ../../etc/passwd", "--service", "files")
    assert seen["state"] == "failed"
    assert seen["rows"] == []
    assert seen["error"].splitlines()[0].startswith("INVALID_ARGUMENT: invalid request")
    assert "file_ids[1]: must not contain '..' segments" in seen["error"]


async def test_the_get_form_works_with_the_browsers_own_event_source(http_service: RillServer) -> None:
    assert http_service.http is not None
    seen = await drive(f"http://{http_service.http.address}/", "x y", "--event-source")
    events = seen["events"]
    assert [e["event"] for e in events] == ["start", "progress", "progress", "complete"]
    assert [e["data"]["order_id"] for e in events[1:3]] == ["x", "y"]
    assert [e["id"] for e in events[1:3]] == ["0", "1"]


@contextlib.asynccontextmanager
async def held(url: str, ids: str, *args: str) -> typing.AsyncIterator[tuple[dict[str, typing.Any], Process]]:
    """The page driven like :func:`drive`, then kept open (browser and all) until the block ends."""
    process = await asyncio.create_subprocess_exec(
        _require_browser(),
        str(SCRIPT),
        url,
        ids,
        *args,
        "--hold",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=90)
        assert line, (await process.stderr.read()).decode() if process.stderr else "no output"
        yield json.loads(line), process
        process.stdin.write(b"close\n")
        process.stdin.close()
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def gated_page() -> typing.AsyncIterator[tuple[str, Probe, CallRegistry]]:
    probe = fresh_probe()
    calls = CallRegistry()
    server = HttpServer(create_http_app([gated_binding()], calls), "127.0.0.1:0")
    await server.start()
    try:
        yield f"http://{server.address}/", probe, calls
    finally:
        await server.stop(grace=0)


async def test_stop_closes_the_stream_and_the_server_stops_the_handler(
    gated_page: tuple[str, Probe, CallRegistry],
) -> None:
    url, probe, calls = gated_page
    async with held(url, "a b g-never c", "--stop-after", "2") as (seen, browser):
        assert seen["state"] == "stopped"
        assert seen["rows"] == ["a", "b"]
        # The browser is still open: only Stop can have ended the request.
        await asyncio.wait_for(probe.finally_ran.wait(), timeout=30)
        assert await calls.wait_idle(30)
        assert browser.returncode is None
    assert probe.handled == ["a", "b"]


@pytest.fixture
async def running_page() -> typing.AsyncIterator[tuple[str, Record, CallRegistry]]:
    calls = CallRegistry()
    binding, record = running_binding(calls, suspend=True, endless=True, pace=0.005)  # a page keeps up
    server = HttpServer(create_http_app([binding], calls), "127.0.0.1:0")
    await server.start()
    try:
        yield f"http://{server.address}/", record, calls
    finally:
        await server.stop(grace=0)


async def test_stop_between_items_ends_the_handler_in_its_call_while_the_browser_stays_open(
    running_page: tuple[str, Record, CallRegistry],
) -> None:
    url, record, calls = running_page
    # An endless stream: nothing but Stop (the page's fetch aborted) ends it while the browser is open.
    async with held(url, "a b c", "--stop-after", "2") as (seen, browser):
        assert seen["state"] == "stopped"
        await asyncio.wait_for(record.finally_ran.wait(), timeout=30)
        assert await calls.wait_idle(30)
        assert browser.returncode is None, "the server's finally ran while the browser was still open"
    assert len(seen["rows"]) >= 2
    assert record.in_flight_at_finally == 1, "its finally ran while the call was still being served"
    assert record.finally_in is record.started_in, "in the task that served the request"
    assert record.handled == record.produced, "the events of every produced item were handled"
