"""Files: hash stored files as a stream.

Every file id names a file under the storage root. All ids are checked before anything is streamed:
an id that would leave the root (``..`` segments, absolute paths, symbolic links that point outside)
is refused with INVALID_ARGUMENT. Files are read in chunks in a worker thread, so a large file never
blocks the event loop, and cancelling the stream stops the hashing at the next chunk.

The check resolves the id's links once; the file is then opened from the root one path component
at a time (``openat`` with ``O_NOFOLLOW``, :func:`open_beneath`), along the path the check resolved.
A link swapped in after the check (inside the root, pointing outside) is therefore never followed:
that file is reported ``not_found`` instead of being read from outside the root.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import errno
import hashlib
import os
import pathlib
import stat
import threading
import typing

import pydantic

import mediator
from server.exceptions import FieldViolation, InvalidArgument

__all__ = [
    "FileLedger",
    "FileProcessedEvent",
    "FileProcessedEventHandler",
    "FileProcessedNotification",
    "FileProcessedResult",
    "FileRecords",
    "FileStorage",
    "ProcessFilesCommand",
    "ProcessFilesCommandHandler",
]

MAX_FILES_PER_REQUEST = 1_000
MAX_FILE_ID_LENGTH = 1_024
CHUNK_SIZE = 1 << 20

FileId = typing.Annotated[str, pydantic.StringConstraints(min_length=1, max_length=MAX_FILE_ID_LENGTH)]


class FileProcessedResult(mediator.Response):
    file_id: str
    status: typing.Literal["completed", "not_found"]
    processed_at: datetime.datetime
    size_bytes: int = 0
    sha256: str = ""


class ProcessFilesCommand(mediator.Request[FileProcessedResult]):
    file_ids: typing.Annotated[list[FileId], pydantic.Field(min_length=1, max_length=MAX_FILES_PER_REQUEST)]


class FileProcessedEvent(mediator.DomainEvent, frozen=True):
    file_id: str
    status: str
    size_bytes: int
    sha256: str


class FileSummary(pydantic.BaseModel, frozen=True):
    file_id: str
    status: str
    size_bytes: int
    sha256: str


class FileProcessedNotification(mediator.NotificationEvent[FileSummary], frozen=True):
    topic: str = "files.processed"


class FileStorage:
    """The files the service may read: everything under ``root``, and nothing else."""

    def __init__(self, root: pathlib.Path) -> None:
        if not root.exists():
            raise FileNotFoundError(f"storage root {root} does not exist")
        self.root = root.resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"storage root {root} is not a directory")

    def _resolve(self, file_id: str) -> pathlib.Path | str:
        """The resolved path of ``file_id``, or what is wrong with it."""
        if "\x00" in file_id:
            return "must not contain NUL characters"
        if file_id.startswith(("/", "\\")) or pathlib.PureWindowsPath(file_id).drive:
            return "must be a path relative to the storage root"
        if ".." in file_id.replace("\\", "/").split("/"):
            return "must not contain '..' segments"
        resolved = (self.root / file_id).resolve()
        if not resolved.is_relative_to(self.root):
            return "must not lead outside the storage root"
        return resolved

    def locate(self, file_ids: typing.Sequence[str]) -> list[pathlib.Path]:
        """The path of every id, or ``InvalidArgument`` naming every id that would leave the root."""
        located = [self._resolve(file_id) for file_id in file_ids]
        violations = [
            FieldViolation(f"file_ids[{index}]", problem)
            for index, problem in enumerate(located)
            if isinstance(problem, str)
        ]
        if violations:
            raise InvalidArgument(violations)
        return typing.cast(list[pathlib.Path], located)


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO or a device must not block the worker thread (they are refused below).
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What "no regular file there (any more)" looks like; ELOOP: a link where the check saw none.
_ABSENT = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENXIO})


def open_beneath(root: pathlib.Path, path: pathlib.Path) -> int | None:
    """A file descriptor of the regular file at ``path`` (under ``root``), or None if there is none.

    Opens ``root``, then each component of ``path`` relative to it, with ``O_NOFOLLOW``: no symbolic
    link is followed, so what is opened is under ``root`` whatever changed since ``path`` was
    resolved. The caller closes the descriptor.
    """
    parts = path.relative_to(root).parts
    if not parts:
        return None  # the root itself
    directory = os.open(root, _DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
        descriptor = os.open(parts[-1], _FILE, dir_fd=directory)
    except OSError as error:
        if error.errno in _ABSENT:
            return None
        raise
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        return None
    return descriptor


def _hash_file(root: pathlib.Path, path: pathlib.Path, stop: threading.Event) -> tuple[int, str] | None:
    """Runs in a worker thread: open, hash chunk by chunk, close; gives up at ``stop``."""
    descriptor = open_beneath(root, path)
    if descriptor is None:
        return None
    with open(descriptor, "rb") as stream:
        digest = hashlib.sha256()
        size = 0
        while not stop.is_set() and (chunk := stream.read(CHUNK_SIZE)):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()


async def sha256_of(root: pathlib.Path, path: pathlib.Path) -> tuple[int, str] | None:
    """``(size, hex digest)`` of the file at ``path`` (under ``root``, resolved), or None when there
    is no regular file there, reached without following a link (:func:`open_beneath`).

    The file is opened, read and closed by one worker thread, so a cancellation can neither leave it
    open nor close it under the reader's feet; it stops the hashing at the next chunk.
    """
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_hash_file, root, path, stop)
    finally:
        stop.set()


class FileRecords(typing.Protocol):
    """Where processed files are recorded: the store's ``files`` table
    (:class:`server.store.read_models.StoredFileLedger`) or, without a store, a :class:`FileLedger`."""

    async def save(self, event: FileProcessedEvent) -> None: ...


class FileLedger:
    """In memory (``database_url = "memory"``, for tests): how many files were processed, by
    status, and the last event of the ``capacity`` file ids processed most recently (what the
    FileProcessedEvent handler records).

    Bounded: clients choose the ids (missing files included), so keeping one entry per id ever asked
    for would grow without end; the oldest id is forgotten first.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("a FileLedger keeps at least one file id")
        self.capacity = capacity
        self.by_status: collections.Counter[str] = collections.Counter()
        self.last: collections.OrderedDict[str, FileProcessedEvent] = collections.OrderedDict()

    def record(self, event: FileProcessedEvent) -> None:
        self.by_status[event.status] += 1
        self.last[event.file_id] = event
        self.last.move_to_end(event.file_id)
        if len(self.last) > self.capacity:
            self.last.popitem(last=False)

    async def save(self, event: FileProcessedEvent) -> None:
        self.record(event)


class ProcessFilesCommandHandler(mediator.StreamingRequestHandler[ProcessFilesCommand, FileProcessedResult]):
    def __init__(self, storage: FileStorage) -> None:
        self._storage = storage
        self._events: list[mediator.Event] = []  # `events` and `clear_events()` come with the base class

    async def handle(self, request: ProcessFilesCommand) -> typing.AsyncIterator[FileProcessedResult]:
        paths = self._storage.locate(request.file_ids)
        for file_id, path in zip(request.file_ids, paths, strict=True):
            hashed = await sha256_of(self._storage.root, path)
            size, sha256 = hashed if hashed is not None else (0, "")
            status: typing.Literal["completed", "not_found"] = (
                "completed" if hashed is not None else "not_found"
            )
            summary = FileSummary(file_id=file_id, status=status, size_bytes=size, sha256=sha256)
            self._events.append(FileProcessedEvent(**summary.model_dump()))
            self._events.append(FileProcessedNotification(payload=summary))
            yield FileProcessedResult(
                file_id=file_id,
                status=status,
                processed_at=datetime.datetime.now(datetime.UTC),
                size_bytes=size,
                sha256=sha256,
            )


class FileProcessedEventHandler(mediator.EventHandler[FileProcessedEvent]):
    def __init__(self, ledger: FileRecords) -> None:
        self._ledger = ledger

    async def handle(self, event: FileProcessedEvent) -> None:
        await self._ledger.save(event)


def commands_mapper(mapper: mediator.RequestMap) -> None:
    mapper.bind(ProcessFilesCommand, ProcessFilesCommandHandler)


def domain_events_mapper(mapper: mediator.EventMap) -> None:
    mapper.bind(FileProcessedEvent, FileProcessedEventHandler)
