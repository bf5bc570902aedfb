"""grpc.aio's completions, taken from its poller in one go per loop turn instead of one per turn.

grpc.aio (1.85) hands each completion of grpc core (a call taken up, a message read or written, a
status sent) to the event loop through a queue and a socket pair: its poller thread queues the
event and writes one byte; the loop's reader for the other end reads *one* byte and then runs every
queued event. So the loop consumes one byte per turn while the poller writes one per event. When the
loop turns slowly (20 SSE streams of 10,000 items: ~300 turns a second, each sending an item of every
stream), the bytes pile up, the socket's buffer fills after ~200 of them, and the poller thread
blocks in ``write()``: grpc core's completions then reach the service in bursts about a second
apart (seen with strace), at most one per loop turn on average. New gRPC calls were taken up two or
three a second, health checks took seconds, and calls still waiting after
``limits.max_unrequested_time`` (30 s) were ended CANCELLED by grpc core (issue 15).

:func:`drain_wakeups` replaces that reader, for the running loop, by one that first takes every
byte but one from the socket (without blocking), then calls grpc's own handler, which reads the last
byte and runs the queued events as before. The poller never waits for the loop, whatever its pace.
It reaches into grpc's private objects (found through the garbage collector, as no API exposes
them); if they are not what this expects (another grpc version), it changes nothing and says so in
the log at DEBUG level.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import typing
import weakref

__all__ = ["drain_wakeups"]

logger = logging.getLogger("server.aio_wakeups")

_done: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_pollers: list[typing.Any] = []  # grpc keeps one per process: found once, the heap is scanned once


def _poller_parts(loop: asyncio.AbstractEventLoop) -> tuple[typing.Any, socket.socket] | None:
    """grpc's PollerCompletionQueue bound to ``loop`` and its (non-blocking) read socket."""
    for candidates in (_pollers, gc.get_objects()):  # grpc makes a new one only after closing all
        for candidate in candidates:
            if type(candidate).__name__ != "PollerCompletionQueue":
                continue
            fields = gc.get_referents(candidate)
            sockets = [f for f in fields if isinstance(f, socket.socket) and not f.getblocking()]
            loops = [f for f in fields if isinstance(f, dict) and loop in f]
            if len(sockets) == 1 and loops and callable(getattr(candidate, "_handle_events", None)):
                _pollers[:] = [candidate]
                return candidate, sockets[0]
    return None


def drain_wakeups(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Make grpc.aio's reader on ``loop`` (default: the running one) drain its socket; True if done.

    Call it after a grpc.aio server or channel exists on the loop (grpc binds the loop then).
    Idempotent per loop.
    """
    loop = loop if loop is not None else asyncio.get_running_loop()
    if loop in _done:
        return True
    parts = _poller_parts(loop)
    if parts is None:
        logger.debug("grpc.aio's poller not found for this loop: its reader is left as it is")
        return False
    poller, read_socket = parts
    handle_events = poller._handle_events

    def on_readable() -> None:
        try:
            waiting = len(read_socket.recv(1 << 16, socket.MSG_PEEK))
            if waiting > 1:
                read_socket.recv(waiting - 1)  # grpc's handler reads the last one
        except BlockingIOError:
            return  # nothing to read: nothing queued either
        handle_events(loop)

    loop.remove_reader(read_socket)
    loop.add_reader(read_socket, on_readable)
    _done.add(loop)
    return True
