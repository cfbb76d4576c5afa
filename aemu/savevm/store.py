"""The snapshot store: one mapped-ram file per snapshot and a catalogue in
SQLite (stdlib), under one directory (a serve host's ``STATE_DIR/snapshots``).

    store = SnapshotStore(state_dir / "snapshots")
    await store.save("ec", vm, "booted")                 # full snapshot
    await store.save("ec", vm, "step1", parent="booted") # only the pages written since
    store.load("ec", vm, "step1")                        # resolves the chain, lazily
    store.list("ec"); store.delete("ec", "booted", rebase=True)

Snapshot names are per VM.  A diff snapshot is possible when the VM's state
descends from the parent without a break: the store keeps, per VM, a dirty
page log started when that VM last saved or loaded a snapshot.  Deleting a
snapshot that others build on is refused, or with ``rebase=True`` its pages
are merged into each child first.  Files are never changed in place (a VM may
have one mapped): every write goes to a new file that replaces the old.
"""
from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from aemu.loop import RunState
from aemu.savevm.codec import StreamError
from aemu.savevm.machine import runstate_of
from aemu.savevm.snapfile import load_files, save_file
from aemu.savevm.stream import PAGE_SIZE, bitmap_bytes, page_up
from aemu.transport.file import SeekableFile

if TYPE_CHECKING:  # pragma: no cover
    from aemu.cpu.core import DirtyLog
    from aemu.hw.machine import Machine

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    vm        TEXT NOT NULL,
    name      TEXT NOT NULL,
    board     TEXT NOT NULL,
    created   REAL NOT NULL,      -- host time, seconds since the epoch
    vm_clock  INTEGER NOT NULL,   -- virtual nanoseconds
    insns     INTEGER NOT NULL,
    ram_size  INTEGER NOT NULL,
    size      INTEGER NOT NULL,   -- bytes of file data (holes not counted)
    pages     INTEGER NOT NULL,   -- RAM pages the file holds
    parent    TEXT,               -- diff snapshots: the snapshot they build on
    runstate  TEXT NOT NULL,
    file      TEXT NOT NULL,
    PRIMARY KEY (vm, name)
);
"""


class SnapshotError(Exception):
    """A snapshot operation that cannot be done (the message says why)."""


#: VM and snapshot names: they name a directory and a file under the store
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


def check_name(name: str, what: str = "snapshot") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SnapshotError(f"invalid {what} name {name!r}: use a letter followed by up to 63 "
                            "letters, digits, '.', '_' or '-'")
    return name


@dataclass
class SnapshotInfo:
    vm: str
    name: str
    board: str
    created: float
    vm_clock: int
    insns: int
    ram_size: int
    size: int
    pages: int
    parent: Optional[str]
    runstate: str
    file: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Tracker:
    """Pages a VM wrote since it last saved or loaded snapshot ``base``."""

    def __init__(self, vm: "Machine", base: str) -> None:
        self.vm = vm
        self.log: "DirtyLog" = vm.cpu.dirty_consumer()
        self.base = base

    def close(self) -> None:
        self.log.close()


class SnapshotStore:
    def __init__(self, root: "str | os.PathLike") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(self.root / "catalogue.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self._trackers: dict[str, _Tracker] = {}

    def close(self) -> None:
        for tracker in self._trackers.values():
            tracker.close()
        self._trackers.clear()
        self.db.close()

    # -- catalogue -------------------------------------------------------------------------
    def _row(self, row: Any) -> SnapshotInfo:
        return SnapshotInfo(*row)

    def get(self, vm: str, name: str) -> SnapshotInfo:
        row = self.db.execute("SELECT * FROM snapshots WHERE vm=? AND name=?",
                              (vm, name)).fetchone()
        if row is None:
            raise SnapshotError(f"VM {vm!r} has no snapshot named {name!r}")
        return self._row(row)

    def list(self, vm: Optional[str] = None) -> list[SnapshotInfo]:
        if vm is None:
            rows = self.db.execute("SELECT * FROM snapshots ORDER BY vm, created")
        else:
            rows = self.db.execute("SELECT * FROM snapshots WHERE vm=? ORDER BY created", (vm,))
        return [self._row(r) for r in rows]

    def children(self, vm: str, name: str) -> list[SnapshotInfo]:
        rows = self.db.execute("SELECT * FROM snapshots WHERE vm=? AND parent=?", (vm, name))
        return [self._row(r) for r in rows]

    def chain(self, vm: str, name: str) -> list[SnapshotInfo]:
        """The snapshot and its ancestors, root first."""
        out = [self.get(vm, name)]
        while out[-1].parent is not None:
            if len(out) > 10_000 or any(s.name == out[-1].parent for s in out):
                raise SnapshotError(f"snapshot {name!r} has a broken parent chain")
            out.append(self.get(vm, out[-1].parent))
        return out[::-1]

    def ids(self, vm: str) -> dict[str, int]:
        """A stable number per snapshot of ``vm`` (HMP's "ID" column)."""
        rows = self.db.execute("SELECT name, rowid FROM snapshots WHERE vm=?", (vm,))
        return {name: rowid for name, rowid in rows}

    def file_of(self, info: SnapshotInfo) -> Path:
        """Where the snapshot's file is."""
        return self.root / info.vm / info.file

    def _path(self, vm: str, name: str) -> Path:
        check_name(vm, "VM")
        check_name(name)
        d = self.root / vm
        d.mkdir(exist_ok=True, mode=0o700)
        return d / f"{name}.snap"

    # -- save / load -------------------------------------------------------------------------
    def check_save(self, vm_name: str, vm: "Machine", name: str, *,
                   parent: Optional[str] = None, overwrite: bool = True) -> None:
        """Raise SnapshotError if ``save`` with these arguments would be
        refused (so a caller can refuse before it stops the VM)."""
        check_name(vm_name, "VM")
        check_name(name)
        existing = self.db.execute("SELECT parent FROM snapshots WHERE vm=? AND name=?",
                                   (vm_name, name)).fetchone()
        if existing is not None:
            if not overwrite:
                raise SnapshotError(f"VM {vm_name!r} already has a snapshot named {name!r}")
            if self.children(vm_name, name):
                raise SnapshotError(f"snapshot {name!r} has diff snapshots on top of it; "
                                    "delete them or save under another name")
        if parent is not None:
            if parent == name:
                raise SnapshotError("a snapshot cannot be its own parent")
            self.get(vm_name, parent)
            tracker = self._trackers.get(vm_name)
            if tracker is None or tracker.vm is not vm or tracker.base != parent:
                raise SnapshotError(f"cannot save a diff on {parent!r}: the VM was not "
                                    f"saved to or loaded from {parent!r} last")

    async def save(self, vm_name: str, vm: "Machine", name: str, *,
                   parent: Optional[str] = None, overwrite: bool = True) -> SnapshotInfo:
        """Save the VM (it must not run meanwhile: the caller stops it).
        ``parent``: make a diff snapshot on top of that one."""
        self.check_save(vm_name, vm, name, parent=parent, overwrite=overwrite)
        pages = None
        if parent is not None:
            pages = self._trackers[vm_name].log.dirty_pages(clear=False)
        path = self._path(vm_name, name)
        saved = await save_file(vm, path, pages=pages)
        info = SnapshotInfo(vm_name, name, vm.board.name, time.time(), vm.clock.ns(),
                            vm.cpu.insn_count, vm.cpu.ram_size, saved.bytes_written,
                            saved.pages, parent, runstate_of(vm).value, path.name)
        self.db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        tuple(info.__dict__.values()))
        self._track(vm_name, vm, name)
        return info

    def load(self, vm_name: str, vm: "Machine", name: str, *, lazy: bool = True) -> RunState:
        """Load a snapshot (resolving a diff chain) into the VM; every file is
        checked first, a bad one leaves the VM unchanged (StreamError)."""
        chain = self.chain(vm_name, name)
        for snap in chain:
            if snap.board != vm.board.name or snap.ram_size != vm.cpu.ram_size:
                raise SnapshotError(f"snapshot {snap.name!r} is of board {snap.board!r} with "
                                    f"{snap.ram_size} bytes of RAM; this VM is "
                                    f"{vm.board.name!r} with {vm.cpu.ram_size}")
        files = [self.root / vm_name / snap.file for snap in chain]
        state = load_files(vm, files, lazy=lazy)
        self._track(vm_name, vm, name)
        return state

    def _track(self, vm_name: str, vm: "Machine", base: str) -> None:
        tracker = self._trackers.get(vm_name)
        if tracker is None or tracker.vm is not vm:
            if tracker is not None:
                tracker.close()
            tracker = self._trackers[vm_name] = _Tracker(vm, base)
        tracker.base = base
        tracker.log.clear()

    def forget_vm(self, vm_name: str) -> None:
        """The VM is gone: stop tracking its pages (its snapshots stay)."""
        tracker = self._trackers.pop(vm_name, None)
        if tracker is not None:
            tracker.close()

    # -- delete ------------------------------------------------------------------------------
    def delete(self, vm_name: str, name: str, *, rebase: bool = False) -> list[str]:
        """Delete a snapshot.  With diff snapshots on top it is refused, or
        with ``rebase`` its pages go into each child first (which then builds
        on its grandparent).  Returns the children rebased."""
        info = self.get(vm_name, name)
        kids = self.children(vm_name, name)
        if kids and not rebase:
            raise SnapshotError(f"snapshot {name!r} has diff snapshots on top of it "
                                f"({', '.join(k.name for k in kids)}); delete them first or "
                                "rebase them")
        for kid in kids:
            self._merge_into(vm_name, info, kid)
        self.db.execute("DELETE FROM snapshots WHERE vm=? AND name=?", (vm_name, name))
        try:
            os.unlink(self.root / vm_name / info.file)
        except FileNotFoundError:
            pass
        tracker = self._trackers.get(vm_name)
        if tracker is not None and tracker.base == name:
            tracker.base = ""              # no diff on a deleted snapshot
        return [k.name for k in kids]

    def _merge_into(self, vm_name: str, parent: SnapshotInfo, child: SnapshotInfo) -> None:
        """Rewrite ``child`` to hold the parent's pages it lacks."""
        d = self.root / vm_name
        src = SeekableFile.open(d / child.file)
        par = SeekableFile.open(d / parent.file)
        out = SeekableFile.create(d / child.file)
        try:
            size = src.size()
            out.truncate(size)
            head, coff, cbits, clen = _header_of(src, child.ram_size)
            _, poff, pbits, _ = _header_of(par, child.ram_size)
            # the child's bytes outside its page area (up to its bitmap, and the
            # stream's tail; the rest of the head is zero padding: holes), its pages
            out.pwrite(0, src.pread(0, head))
            tail_at = coff + clen
            out.pwrite(tail_at, src.pread(tail_at, size - tail_at))
            merged = bytearray(cbits)
            count = 0
            for page in range(-(-child.ram_size // PAGE_SIZE)):
                mine = cbits[page >> 3] >> (page & 7) & 1
                theirs = pbits[page >> 3] >> (page & 7) & 1
                if not (mine or theirs):
                    continue
                start = page * PAGE_SIZE
                n = min(PAGE_SIZE, child.ram_size - start)
                data = (src.pread(coff + start, n) if mine else par.pread(poff + start, n))
                out.pwrite(coff + start, data)
                merged[page >> 3] |= 1 << (page & 7)
                count += 1
            out.pwrite(head, bytes(merged))
            out.commit()
            written = out.bytes_written
        finally:
            out.close()
            src.close()
            par.close()
        self.db.execute("UPDATE snapshots SET parent=?, pages=?, size=? WHERE vm=? AND name=?",
                        (parent.parent, count, written, vm_name, child.name))


def _header_of(f: SeekableFile, ram_size: int) -> tuple[int, int, bytes, int]:
    """(bitmap offset, pages offset, bitmap, ram block length) of a mapped-ram
    file, read by searching the RAM setup record (the layout is aemu's own).
    The block length is the RAM size in whole pages (older files: exact)."""
    head = f.pread(0, 4096)
    for length in dict.fromkeys((page_up(ram_size), ram_size)):
        marker = length.to_bytes(8, "big") + (1).to_bytes(4, "big") + \
            PAGE_SIZE.to_bytes(8, "big")
        at = head.find(marker)
        if at >= 0:
            break
    else:
        raise StreamError("not a mapped-ram snapshot file", 0, "ram")
    at += len(marker)
    bitmap_offset = int.from_bytes(head[at:at + 8], "big")
    pages_offset = int.from_bytes(head[at + 8:at + 16], "big")
    nbytes = bitmap_bytes(-(-ram_size // PAGE_SIZE))
    return bitmap_offset, pages_offset, f.pread(bitmap_offset, nbytes), length


__all__ = ["SnapshotError", "SnapshotInfo", "SnapshotStore"]
