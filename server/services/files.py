"""Files: hash stored files as a stream.

Every file id names a file under the storage root. All ids are checked before anything is streamed:
an id that would leave the root (``..`` segments, absolute paths, symbolic links that point outside)
is refused with INVALID_ARGUMENT. Files are read in chunks in a worker thread, so a large file never
blocks the event loop, and cancelling the stream stops the hashing at the next chunk.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import pathlib
import threading
import typing

import pydantic

import mediator
from server.errors import FieldViolation, InvalidArgument

__all__ = [
    "FileLedger",
    "FileProcessedEvent",
    "FileProcessedEventHandler",
    "FileProcessedNotification",
    "FileProcessedResult",
    "FileStorage",
    "ProcessFilesCommand",
    "ProcessFilesCommandHandler",
]

MAX_FILES_PER_REQUEST = 1_000
MAX_FILE_ID_LENGTH = 1_024
CHUNK_SIZE = 1 << 20

FileId = typing.Annotated[str, pydantic.StringConstraints(min_length=1, max_length=MAX_FILE_ID_LENGTH)]


class ProcessFilesCommand(mediator.Request):
    file_ids: typing.Annotated[list[FileId], pydantic.Field(min_length=1, max_length=MAX_FILES_PER_REQUEST)]


class FileProcessedResult(mediator.Response):
    file_id: str
    status: typing.Literal["completed", "not_found"]
    processed_at: datetime.datetime
    size_bytes: int = 0
    sha256: str = ""


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

    def _violation(self, file_id: str) -> str | None:
        if "\x00" in file_id:
            return "must not contain NUL characters"
        if file_id.startswith(("/", "\\")) or pathlib.PureWindowsPath(file_id).drive:
            return "must be a path relative to the storage root"
        if ".." in file_id.replace("\\", "/").split("/"):
            return "must not contain '..' segments"
        resolved = (self.root / file_id).resolve()
        if not resolved.is_relative_to(self.root):
            return "must not lead outside the storage root"
        return None

    def locate(self, file_ids: typing.Sequence[str]) -> list[pathlib.Path]:
        """The path of every id, or ``InvalidArgument`` naming every id that would leave the root."""
        violations = [
            FieldViolation(f"file_ids[{index}]", problem)
            for index, file_id in enumerate(file_ids)
            if (problem := self._violation(file_id)) is not None
        ]
        if violations:
            raise InvalidArgument(violations)
        return [(self.root / file_id).resolve() for file_id in file_ids]


def _hash_file(path: pathlib.Path, stop: threading.Event) -> tuple[int, str] | None:
    """Runs in a worker thread: open, hash chunk by chunk, close; gives up at ``stop``."""
    # is_file() first: opening a FIFO or a device would block the worker thread for good.
    if not path.is_file():
        return None
    try:
        stream = path.open("rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    with stream:
        digest = hashlib.sha256()
        size = 0
        while not stop.is_set() and (chunk := stream.read(CHUNK_SIZE)):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()


async def sha256_of(path: pathlib.Path) -> tuple[int, str] | None:
    """``(size, hex digest)`` of the file at ``path``, or None when there is no regular file there.

    The file is opened, read and closed by one worker thread, so a cancellation can neither leave it
    open nor close it under the reader's feet; it stops the hashing at the next chunk.
    """
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_hash_file, path, stop)
    finally:
        stop.set()


class FileLedger:
    """How many files were processed, by status (what the FileProcessedEvent handler records)."""

    def __init__(self) -> None:
        self.by_status: collections.Counter[str] = collections.Counter()
        self.last: dict[str, FileProcessedEvent] = {}


class ProcessFilesCommandHandler(mediator.StreamingRequestHandler[ProcessFilesCommand, FileProcessedResult]):
    def __init__(self, storage: FileStorage) -> None:
        self._storage = storage
        self._events: list[mediator.Event] = []  # `events` and `clear_events()` come with the base class

    async def handle(self, request: ProcessFilesCommand) -> typing.AsyncIterator[FileProcessedResult]:
        paths = self._storage.locate(request.file_ids)
        for file_id, path in zip(request.file_ids, paths, strict=True):
            hashed = await sha256_of(path)
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
    def __init__(self, ledger: FileLedger) -> None:
        self._ledger = ledger

    async def handle(self, event: FileProcessedEvent) -> None:
        self._ledger.by_status[event.status] += 1
        self._ledger.last[event.file_id] = event


def commands_mapper(mapper: mediator.RequestMap) -> None:
    mapper.bind(ProcessFilesCommand, ProcessFilesCommandHandler)


def domain_events_mapper(mapper: mediator.EventMap) -> None:
    mapper.bind(FileProcessedEvent, FileProcessedEventHandler)
