"""How the command line shows a stream: a live progress bar, JSON lines, or plain lines.

* a terminal gets a rich progress bar (count/total, rate, elapsed, time left) with each result
  printed above it as it arrives;
* ``--json`` gets one JSON object per line, flushed as each result arrives (for ``jq`` and scripts);
* anything else (a pipe, a file) gets one plain line per result, flushed likewise, and no bar.
"""

from __future__ import annotations

import asyncio
import functools
import time
import types
import typing

import pydantic
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from client._results import FileProcessedResult, OrderProcessedResult, OrderView

__all__ = ["Display", "JsonLines", "LiveProgress", "PlainLines", "describe"]


@functools.singledispatch
def describe(result: pydantic.BaseModel) -> Text:
    """One line about ``result`` for a person (styles show on a terminal only)."""
    return Text(result.model_dump_json())


@describe.register
def _(result: OrderProcessedResult) -> Text:
    return Text.assemble(
        (result.order_id, "bold"),
        "  ",
        (result.status, "green" if result.status == "processed" else "yellow"),
        f"  {result.items_count} items  ",
        (result.processed_at.isoformat(), "dim"),
    )


@describe.register
def _(result: FileProcessedResult) -> Text:
    if result.status != "completed":
        return Text.assemble((result.file_id, "bold"), "  ", (result.status, "red"))
    return Text.assemble(
        (result.file_id, "bold"),
        "  ",
        (result.status, "green"),
        f"  {result.size_bytes} bytes  sha256 ",
        (result.sha256, "dim"),
    )


@describe.register
def _(result: OrderView) -> Text:
    return Text.assemble(
        (result.order_id, "bold"),
        "  ",
        (result.status, "green" if result.status == "processed" else "yellow"),
        f"  customer {result.customer_id}  total {result.total_amount:.2f}  ",
        (result.processed_at.isoformat(), "dim"),
    )


class Display(typing.Protocol):
    """Where the results of a stream go, one by one."""

    def __enter__(self) -> typing.Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None: ...

    def item(self, result: pydantic.BaseModel) -> None: ...


class _Lines:
    def __init__(self, stream: typing.TextIO) -> None:
        self._stream = stream

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        return None

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()  # a reader at the other end of a pipe sees each result as it arrives


class JsonLines(_Lines):
    """One JSON object per result and per line (the model's own JSON, snake_case like the .proto)."""

    def item(self, result: pydantic.BaseModel) -> None:
        self._write(result.model_dump_json())


class PlainLines(_Lines):
    """One plain line per result, no styles and no bar."""

    def item(self, result: pydantic.BaseModel) -> None:
        self._write(describe(result).plain)


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


FLUSH_INTERVAL = 0.05


class LiveProgress:
    """A progress bar at the bottom of the terminal, with every result printed above it."""

    def __init__(self, console: Console, *, total: int, label: str) -> None:
        self.console = console
        self._progress = Progress(
            SpinnerColumn(finished_text="[green]done[/]"),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            # The display must not swallow what other code prints: nothing else prints meanwhile.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._label = label
        self._task = self._progress.add_task(label, total=total)
        self._pending: list[Text] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = -FLUSH_INTERVAL

    def __enter__(self) -> typing.Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        if exc is not None:  # leave the bar saying why it stopped short
            stopped = (
                "interrupted" if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) else "failed"
            )
            self._progress.update(self._task, description=f"{self._label} [yellow]{stopped}[/]")
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()  # what was received is shown, however the stream ended
        self._progress.stop()

    def item(self, result: pydantic.BaseModel) -> None:
        """Show ``result``: at once after a quiet spell; within FLUSH_INTERVAL s during a burst."""
        self._pending.append(describe(result))
        if self._flush_handle is not None:
            return
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self._flush()
        else:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush)

    def _flush(self) -> None:
        # Every print redraws the live bar: printing a burst in one go keeps up with a fast stream.
        self._flush_handle = None
        if self._pending:
            self._progress.console.print(Text("\n").join(self._pending), soft_wrap=True)
            self._progress.advance(self._task, len(self._pending))
            self._pending.clear()
        self._last_flush = time.monotonic()
