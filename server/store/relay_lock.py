"""One relay per SQLite file: an OS file lock beside the database, held while a relay publishes.

SQLite has no ``SKIP LOCKED``: two relays on one file would publish the same rows. Every relay of a
file (the workers of ``--workers N``, a second server started by mistake) tries to take
``<database>.relay.lock`` with ``flock``; the one that has it publishes, the others try again every
poll interval. The kernel releases the lock when its holder closes it or dies (``kill -9`` too), so
another relay takes over within one poll interval. ``flock`` locks belong to an open file, not to
a process: two relays in one process exclude each other as well.
"""

from __future__ import annotations

import fcntl
import os
import pathlib

__all__ = ["RelayLock"]


class RelayLock:
    """A non-blocking exclusive ``flock`` on ``path``: :meth:`try_acquire`, :meth:`release`."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True if this object holds it now."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the open file releases the flock
