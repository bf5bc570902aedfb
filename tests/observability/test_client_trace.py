"""``python -m client --trace`` / ``--traceparent``: one trace spans the command line and the server."""

from __future__ import annotations

import asyncio
import re
import sys

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from server.tracing import Tracing
from tests.client.conftest import ROOT, cli_env
from tests.observability.observed import ObservedServer


async def rill(address: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--address", address, *args,
        cwd=ROOT, env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_the_command_line_starts_or_continues_a_trace_the_server_joins() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    given = "0af7651916cd43dd8448eb211c80319c"
    async with ObservedServer(tracing=tracing) as server:
        code, stderr = await rill(server.address, "--trace", "orders", "process", "a", "b", "--json")
        assert code == 0, stderr
        match = re.search(r"trace id ([0-9a-f]{32})", stderr)
        assert match, stderr
        code, stderr = await rill(
            server.address,
            "--traceparent",
            f"00-{given}-00f067aa0ba902b7-01",
            "orders",
            "process",
            "c",
            "--json",
        )
        assert code == 0, stderr
        code, stderr = await rill(server.address, "--traceparent", "nonsense", "orders", "process", "d")
        assert code == 2
    server_traces = [
        format(span.context.trace_id, "032x")
        for span in exporter.get_finished_spans()
        if span.kind == SpanKind.SERVER and span.context is not None
    ]
    assert server_traces == [match.group(1), given]
