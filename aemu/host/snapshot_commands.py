"""The snapshot commands of a VM's QMP socket (merged into the VM table).

QEMU's (qapi/migration.json, qapi/job.json), run as jobs:

    snapshot-save   {job-id, tag, vmstate?, devices?}
    snapshot-load   {job-id, tag, vmstate?, devices?}
    snapshot-delete {job-id, tag, devices?}
    query-jobs, job-dismiss {id}

QEMU requires ``vmstate`` and ``devices`` (block nodes that hold the VM state
and the disk snapshots); aemu has no block devices, so both may be left out:
``vmstate`` is accepted and ignored, ``devices`` must be empty.  A tag that
exists already fails snapshot-save, as in QEMU.

aemu's own, which reply when the work is done (simpler for scripts):

    __org.aemu_snapshot-save   {tag?, parent?, overwrite?}  -> the snapshot's info
    __org.aemu_snapshot-load   {tag, lazy?}                 -> {"status": run state}
    __org.aemu_snapshot-list                                -> [info, ...]
    __org.aemu_snapshot-delete {tag, rebase?}               -> {"rebased": [names]}
    __org.aemu_query-blockers                               -> {"normal": [...], ...}

(query-migrate is with the migration commands, aemu/host/migration_commands.py.)
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

from aemu.host.commands import CommandContext
from aemu.host.protocol import QmpError
from aemu.host.snapshots import SnapshotFailed, auto_tag, info_json
from aemu.host.vm_commands import vm


def _no_devices(devices: Optional[list[str]]) -> None:
    """aemu has no block devices: a node name QEMU would look up is unknown."""
    if devices:
        raise SnapshotFailed(f"No block device node '{devices[0]}' (aemu VMs have no block "
                             "devices: give devices as [] or leave it out)")


def _job(ctx: CommandContext, job_id: str, kind: str,
         work: Callable[[], Awaitable[Any]]) -> None:
    """Start ``work`` as a job; its failure is the job's error (query-jobs)."""
    ctx.target.jobs.start(job_id, kind, work)


@vm.command("snapshot-save", {"job-id": "str", "tag": "str", "*vmstate": "str",
                              "*devices": ["str"]})
def snapshot_save(ctx: CommandContext, job_id: str, tag: str, vmstate: str | None = None,
                  devices: list[str] | None = None) -> None:
    """Start a job that saves the VM as snapshot ``tag`` (an existing tag is
    an error); the guest is stopped while the file is written."""
    snaps = ctx.target.snapshots

    async def work() -> Any:
        _no_devices(devices)
        return await snaps.save(tag, overwrite=False)
    _job(ctx, job_id, "snapshot-save", work)


@vm.command("snapshot-load", {"job-id": "str", "tag": "str", "*vmstate": "str",
                              "*devices": ["str"]})
def snapshot_load(ctx: CommandContext, job_id: str, tag: str, vmstate: str | None = None,
                  devices: list[str] | None = None) -> None:
    """Start a job that loads snapshot ``tag`` (resolving a diff chain)."""
    snaps = ctx.target.snapshots

    async def work() -> Any:
        _no_devices(devices)
        return await snaps.load(tag)
    _job(ctx, job_id, "snapshot-load", work)


@vm.command("snapshot-delete", {"job-id": "str", "tag": "str", "*devices": ["str"]})
def snapshot_delete(ctx: CommandContext, job_id: str, tag: str,
                    devices: list[str] | None = None) -> None:
    """Start a job that deletes snapshot ``tag`` (refused while diff snapshots
    build on it: see __org.aemu_snapshot-delete's rebase)."""
    snaps = ctx.target.snapshots

    async def work() -> Any:
        _no_devices(devices)
        return await snaps.delete(tag)
    _job(ctx, job_id, "snapshot-delete", work)


@vm.command("query-jobs")
def query_jobs(ctx: CommandContext) -> list:
    """Every job not yet dismissed: QEMU's JobInfo (id, type, status,
    current-progress, total-progress, error if it failed)."""
    return ctx.target.jobs.query()


@vm.command("job-dismiss", {"id": "str"})
def job_dismiss(ctx: CommandContext, id: str) -> None:
    """Remove a concluded job from query-jobs."""
    ctx.target.jobs.dismiss(id)


async def _call(coro: Awaitable[Any]) -> Any:
    try:
        return await coro
    except SnapshotFailed as exc:
        raise QmpError(str(exc)) from None


@vm.command("__org.aemu_snapshot-save", {"*tag": "str", "*parent": "str",
                                         "*overwrite": "bool"})
async def aemu_snapshot_save(ctx: CommandContext, tag: str | None = None,
                             parent: str | None = None, overwrite: bool = False) -> dict:
    """Save the VM as snapshot ``tag`` (default: vm-YYYYMMDDhhmmss) and reply
    when it is written.  ``parent``: a diff snapshot, only the pages written
    since ``parent`` was saved or loaded; ``overwrite``: replace a snapshot of
    that name.  Returns the snapshot's info."""
    snaps = ctx.target.snapshots
    info = await _call(snaps.save(tag or auto_tag(), parent=parent, overwrite=overwrite))
    return info_json(snaps.store, info)


@vm.command("__org.aemu_snapshot-load", {"tag": "str", "*lazy": "bool"})
async def aemu_snapshot_load(ctx: CommandContext, tag: str, lazy: bool = True) -> dict:
    """Load snapshot ``tag``; ``lazy`` (default): RAM pages are read from the
    file on first touch.  Returns the run state the VM is in now."""
    state = await _call(ctx.target.snapshots.load(tag, lazy=lazy))
    return {"status": state.value}


@vm.command("__org.aemu_snapshot-list")
def aemu_snapshot_list(ctx: CommandContext) -> list:
    """This VM's snapshots, oldest first: name, date, vm-clock-ns, icount,
    vm-state-size, pages, parent, status (the run state saved), file, ..."""
    snaps = ctx.target.snapshots
    try:
        return [info_json(snaps.store, info) for info in snaps.list()]
    except SnapshotFailed as exc:
        raise QmpError(str(exc)) from None


@vm.command("__org.aemu_snapshot-delete", {"tag": "str", "*rebase": "bool"})
async def aemu_snapshot_delete(ctx: CommandContext, tag: str, rebase: bool = False) -> dict:
    """Delete snapshot ``tag``.  With diff snapshots on top it is refused,
    unless ``rebase``: its pages go into each of them first."""
    rebased = await _call(ctx.target.snapshots.delete(tag, rebase=rebase))
    return {"rebased": rebased}


@vm.command("__org.aemu_query-blockers")
def aemu_query_blockers(ctx: CommandContext) -> dict:
    """What blocks saving or migrating this VM now, per migration mode."""
    return ctx.target.snapshots.blocked()


__all__ = ["vm"]
