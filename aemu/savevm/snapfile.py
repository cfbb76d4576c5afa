"""Snapshot files: a VM's whole state as a QEMU stream in the mapped-ram
layout (qemu-migration.md §3), so that RAM pages sit at fixed offsets.

- Saving writes the stream's head, the page bitmap and its tail in place,
  and the pages as coalesced runs, in batches on worker threads
  (aemu/transport/file.py); the VM must not run meanwhile.  A full snapshot
  holds the non-zero pages (zero pages are holes); a *diff* snapshot holds
  exactly the pages written since its parent, zero or not.
- Loading checks every file of the chain first (aemu/savevm/stream.py parse,
  over a read-only mapping: device sections are read, pages are not).  Then
  RAM comes either eagerly (copied from the files) or lazily: the root file's
  page area is mapped copy-on-write under guest RAM and the kernel reads each
  page on first touch; a chain's diffs are copied on top.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from aemu.loop import RunState
from aemu.savevm.codec import StreamError
from aemu.savevm.machine import apply_parsed, globalstate_of, sections
from aemu.savevm.stream import PAGE_SIZE, Parsed, layout_mapped, parse
from aemu.transport.file import SeekableFile

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine


@dataclass
class SavedFile:
    path: str
    size: int               #: file length (holes included)
    pages: int              #: RAM pages in the file
    bytes_written: int


def page_runs(pages: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted page numbers -> (first, count) runs."""
    runs: list[tuple[int, int]] = []
    for p in sorted(pages):
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((p, 1))
    return runs


async def save_file(vm: "Machine", path: "str | os.PathLike", *,
                    pages: Optional[Iterable[int]] = None, workers: int = 2,
                    sync: bool = True) -> SavedFile:
    """Write the VM's state to ``path`` (atomically: a temporary file renamed).
    ``pages``: the page numbers to include (a diff snapshot); default: the
    non-zero pages (a full one).  The caller keeps the VM from running."""
    cpu = vm.cpu
    present = cpu.nonzero_pages() if pages is None else sorted(set(pages))
    layout = layout_mapped(vm.board.name, cpu.ram_size, present, sections(vm),
                           globalstate_of(vm))
    ram = memoryview(cpu.ram)
    pieces = []
    for first, count in page_runs(present):
        start = first * PAGE_SIZE
        end = min(start + count * PAGE_SIZE, cpu.ram_size)
        pieces.append((layout.pages_offset + start, ram[start:end]))
    f = SeekableFile.create(path)
    try:
        f.truncate(layout.file_size)
        f.pwrite(0, layout.head)
        f.pwrite(layout.bitmap_offset, layout.bitmap)
        f.pwrite(layout.tail_offset, layout.tail)
        await f.pwrite_all(pieces, workers=workers)
        f.commit(sync=sync)
        return SavedFile(os.fspath(path), layout.file_size, len(present), f.bytes_written)
    finally:
        f.close()


class OpenSnapshot:
    """A snapshot file checked against a VM and held open (read-only mapping)."""

    def __init__(self, path: "str | os.PathLike", vm: "Machine") -> None:
        self.path = os.fspath(path)
        self.file = SeekableFile.open(self.path)
        try:
            size = self.file.size()
            if size == 0:
                raise StreamError("empty file", 0)
            self.map = mmap.mmap(self.file.fd, size, prot=mmap.PROT_READ)
            self.parsed: Parsed = parse(memoryview(self.map), sections(vm),
                                        machine_type=vm.board.name, ram_size=vm.cpu.ram_size)
            if self.parsed.bitmap is None:
                raise StreamError("not a snapshot file (no mapped-ram page area)", None, "ram")
        except BaseException:
            self.close()
            raise

    def copy_pages(self, vm: "Machine") -> int:
        """Copy this file's pages into guest RAM (for a diff, or an eager load)."""
        base, size = self.parsed.pages_offset, vm.cpu.ram_size
        pages = self.parsed.present_pages()
        with memoryview(self.map) as view:       # no intermediate copies
            for first, count in page_runs(pages):
                start = first * PAGE_SIZE
                end = min(start + count * PAGE_SIZE, size)
                with view[base + start:base + end] as piece:
                    vm.cpu.write(start, piece)
        return len(pages)

    def close(self) -> None:
        m = getattr(self, "map", None)
        if m is not None:
            try:
                m.close()
            except BufferError:        # a view is still alive; the GC closes it
                pass
            self.map = None
        self.file.close()


def load_files(vm: "Machine", chain: Sequence["str | os.PathLike"], *,
               lazy: bool = True) -> RunState:
    """Load a snapshot: ``chain`` is the root (full) file first, then each
    diff.  Every file is checked before the VM changes; a bad one raises
    StreamError (naming the file) and leaves the VM as it was."""
    if not chain:
        raise ValueError("no snapshot file given")
    opened: list[OpenSnapshot] = []
    try:
        for path in chain:
            try:
                opened.append(OpenSnapshot(path, vm))
            except StreamError as exc:
                raise StreamError(f"{os.fspath(path)}: {exc.reason}", exc.offset,
                                  exc.section) from None
        root, last = opened[0], opened[-1]

        def load_ram() -> None:
            # eager: the same mapping, every page read in now (the kernel maps
            # the file's cached pages; a write copies just that page)
            vm.cpu.map_ram_file(root.file.fd, root.parsed.pages_offset, populate=not lazy)
            for diff in opened[1:]:
                diff.copy_pages(vm)
        return apply_parsed(vm, last.parsed, load_ram)
    finally:
        for snap in opened:
            snap.close()
