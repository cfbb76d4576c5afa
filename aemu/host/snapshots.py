"""Snapshots of one hosted VM: save, load, list and delete by name in the
host's snapshot store (aemu/savevm/store.py), with QEMU's rules:

- a save checks the VM's blockers (aemu/savevm/blocker.py, mode normal) and
  fails with their reasons before anything happens;
- the guest is stopped while the file is written: run state ``save-vm``,
  with STOP before and RESUME after if it was running (a paused VM stays
  paused and sends nothing), as QEMU's save_snapshot does;
- a load runs in ``restore-vm``; afterwards the VM takes the run state
  QEMU's load_snapshot_resume gives it (Machine.state_replaced): a VM that
  ran runs on, a paused one stays paused, a snapshot of a suspended or
  ended guest comes back so.  A load that fails leaves the VM as it was.

One operation at a time per VM; the QMP jobs, the ``__org.aemu_snapshot-*``
commands, HMP savevm/loadvm/delvm and ``aemu snapshot`` all come here.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from aemu.loop import RunState
from aemu.savevm.blocker import ALL_MODES, Blockers, Mode, machine_blockers
from aemu.savevm.codec import StreamError
from aemu.savevm.store import SnapshotError, SnapshotInfo, SnapshotStore, check_name

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine


class SnapshotFailed(Exception):
    """A snapshot operation that failed; the message says why."""


#: a store, a function that opens one on first use, or None (no snapshots)
StoreSource = Union[SnapshotStore, Callable[[], SnapshotStore], None]


def auto_tag(now: Optional[float] = None) -> str:
    """HMP savevm's name for an unnamed snapshot: vm-YYYYMMDDhhmmss (local time)."""
    return time.strftime("vm-%Y%m%d%H%M%S", time.localtime(now))


def info_json(store: SnapshotStore, info: SnapshotInfo) -> dict[str, Any]:
    """A catalogue entry as QMP returns it."""
    return {"name": info.name, "vm": info.vm, "board": info.board,
            "date": info.created, "vm-clock-ns": info.vm_clock, "icount": info.insns,
            "ram-size": info.ram_size, "vm-state-size": info.size, "pages": info.pages,
            "parent": info.parent, "status": info.runstate,
            "file": str(store.file_of(info))}


class VmSnapshots:
    """The snapshot operations of one VM (``name`` in ``store``)."""

    def __init__(self, name: str, machine: "Machine", store: StoreSource,
                 blockers: Optional[Blockers] = None) -> None:
        self.name = name
        self.machine = machine
        self._source = store
        self.store: Optional[SnapshotStore] = store if isinstance(store, SnapshotStore) else None
        self.blockers = blockers if blockers is not None else machine_blockers(machine)
        self._lock = asyncio.Lock()
        #: why no snapshot may be saved or loaded now (a migration runs), or None
        self.busy: Callable[[], Optional[str]] = lambda: None

    def _check_busy(self) -> None:
        why = self.busy()
        if why:
            raise SnapshotFailed(why)

    def _store(self) -> SnapshotStore:
        if self.store is None:
            if self._source is None:
                raise SnapshotFailed("this VM has no snapshot store")
            try:
                self.store = self._source()  # type: ignore[operator]
            except (OSError, sqlite3.Error, ValueError) as exc:
                raise SnapshotFailed(f"cannot open the snapshot store: {exc}") from None
        return self.store

    def forget(self) -> None:
        """The VM is gone: its store stops tracking its pages (and a store
        this VM opened itself, from a function, is closed)."""
        if self.store is not None:
            self.store.forget_vm(self.name)
            if self.store is not self._source:
                self.store.close()
                self.store = None

    def blocked(self) -> dict[str, list[str]]:
        """Every mode's active blocker reasons (__org.aemu_query-blockers)."""
        return {mode.value: self.blockers.reasons(mode) for mode in ALL_MODES}

    async def save(self, tag: str, *, parent: Optional[str] = None,
                   overwrite: bool = False) -> SnapshotInfo:
        self._check_busy()
        store = self._store()
        machine = self.machine
        async with self._lock:
            try:
                check_name(tag)
                reasons = self.blockers.reasons(Mode.NORMAL)
                if reasons:
                    raise SnapshotFailed("the VM cannot be saved: " + "; ".join(reasons))
                store.check_save(self.name, machine, tag, parent=parent, overwrite=overwrite)
                machine.hold(RunState.SAVE_VM)
                try:
                    return await store.save(self.name, machine, tag, parent=parent,
                                            overwrite=overwrite)
                finally:
                    machine.release()
            except (SnapshotError, OSError, sqlite3.Error) as exc:
                raise SnapshotFailed(_describe(exc)) from None

    async def load(self, tag: str, *, lazy: bool = True) -> RunState:
        """Load a snapshot; returns the run state the VM is in afterwards."""
        self._check_busy()
        store = self._store()
        machine = self.machine
        async with self._lock:
            try:
                store.chain(self.name, tag)            # a missing one: refused, no events
                machine.hold(RunState.RESTORE_VM)
                try:
                    store.load(self.name, machine, tag, lazy=lazy)
                except BaseException:
                    machine.release()                  # back to the state from before
                    raise
            except (SnapshotError, StreamError, OSError, sqlite3.Error) as exc:
                raise SnapshotFailed(_describe(exc)) from None
            # the restored guest never opened the host files the old one holds
            machine.semihost.close()
            return machine.state

    async def delete(self, tag: str, *, rebase: bool = False) -> list[str]:
        """Delete a snapshot; returns the diff snapshots rebased onto its parent."""
        store = self._store()
        async with self._lock:
            try:
                return store.delete(self.name, tag, rebase=rebase)
            except (SnapshotError, StreamError, OSError, sqlite3.Error) as exc:
                raise SnapshotFailed(_describe(exc)) from None

    def list(self) -> list[SnapshotInfo]:
        try:
            return self._store().list(self.name)
        except sqlite3.Error as exc:
            raise SnapshotFailed(f"the snapshot catalogue: {exc}") from None

    def get(self, tag: str) -> SnapshotInfo:
        try:
            return self._store().get(self.name, tag)
        except SnapshotError as exc:
            raise SnapshotFailed(str(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)
