"""A seekable file channel: positioned reads and writes, batched onto worker
threads.

Snapshot files put each RAM page at a fixed offset (the mapped-ram layout), so
a writer hands over a list of (offset, buffer) pieces -- runs of pages
coalesced by the caller -- and ``pwrite_all`` splits them into a few batches
of similar size, one per worker: one thread hop per batch, never per page.
The file is written under a temporary name and renamed into place by
``commit()``, so a reader never sees half a file and an existing file is
never changed in place (readers may have it mapped).
"""
from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

Piece = tuple[int, "bytes | bytearray | memoryview"]

#: worker threads shared by every file channel (2-core machines: a few suffice)
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aemu-file")
BATCH_MIN = 1 << 20             #: do not split below this many bytes per worker


def split_batches(pieces: Sequence[Piece], workers: int) -> list[list[Piece]]:
    """``pieces`` in at most ``workers`` batches of similar byte counts, in order."""
    total = sum(len(b) for _, b in pieces)
    n = max(1, min(workers, total // BATCH_MIN or 1, len(pieces)))
    target = -(-total // n)
    batches: list[list[Piece]] = [[]]
    size = 0
    for piece in pieces:
        if size >= target and len(batches) < n:
            batches.append([])
            size = 0
        batches[-1].append(piece)
        size += len(piece[1])
    return [b for b in batches if b]


def _pwrite_batch(fd: int, batch: Sequence[Piece]) -> int:
    written = 0
    for offset, buf in batch:
        view = memoryview(buf).cast("B")
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
            written += n
    return written


class SeekableFile:
    """A file being written at fixed offsets (``create``), or read (``open``)."""

    def __init__(self, path: "str | os.PathLike", fd: int, tmp: "str | None") -> None:
        self.path = os.fspath(path)
        self.fd = fd
        self._tmp = tmp
        self.bytes_written = 0

    @classmethod
    def create(cls, path: "str | os.PathLike", mode: int = 0o600) -> "SeekableFile":
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        return cls(path, fd, tmp)

    @classmethod
    def open(cls, path: "str | os.PathLike") -> "SeekableFile":
        return cls(path, os.open(os.fspath(path), os.O_RDONLY | os.O_NOFOLLOW), None)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        """Set the length: the gaps stay holes (they read as zero)."""
        os.ftruncate(self.fd, size)

    def pwrite(self, offset: int, data: "bytes | bytearray | memoryview") -> None:
        self.bytes_written += _pwrite_batch(self.fd, [(offset, data)])

    async def pwrite_all(self, pieces: Sequence[Piece], workers: int = 2) -> int:
        """Write every piece at its offset, in up to ``workers`` threads."""
        if not pieces:
            return 0
        loop = asyncio.get_running_loop()
        batches = split_batches(pieces, workers)
        done = await asyncio.gather(*(loop.run_in_executor(_POOL, _pwrite_batch, self.fd, b)
                                      for b in batches))
        n = sum(done)
        self.bytes_written += n
        return n

    def pwrite_all_sync(self, pieces: Sequence[Piece]) -> int:
        """The same, on the calling thread (the reference for the parallel one)."""
        n = _pwrite_batch(self.fd, pieces)
        self.bytes_written += n
        return n

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def commit(self, sync: bool = True) -> None:
        """Make the file durable and give it its real name."""
        if self._tmp is None:
            return
        if sync:
            os.fsync(self.fd)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def close(self) -> None:
        """Close; an uncommitted file is removed."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def __enter__(self) -> "SeekableFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
