"""One VM's migration state, as QEMU keeps it per process: capabilities and
parameters, the current (or last) migration of either direction, the file
descriptors ``getfd`` passed, and query-migrate's answer.

    mgr = MigrationManager(vm)
    mgr.options.set_capabilities([{"capability": "return-path", "state": True}])
    job = mgr.migrate("unix:/tmp/dst.sock")        # the source: a task starts
    await job.done.wait(); mgr.info()["status"]    # "completed"

    mgr = MigrationManager(dst_vm)                  # the destination
    job = await mgr.incoming("tcp:127.0.0.1:0")    # listening; job.address
"""
from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from aemu.migration.incoming import Incoming
from aemu.migration.options import Options
from aemu.migration.outgoing import MigrationError, Outgoing
from aemu.migration.status import Status, info
from aemu.savevm.blocker import Blockers, Mode, machine_blockers
from aemu.transport.uri import UriError, parse_uri

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine

Job = Union[Outgoing, Incoming]


class MigrationManager:
    def __init__(self, vm: "Machine", *, blockers: Optional[Blockers] = None,
                 emit: Optional[Callable[[str, dict], None]] = None) -> None:
        self.vm = vm
        self.options = Options()
        self.blockers = blockers if blockers is not None else machine_blockers(vm)
        self.current: Optional[Job] = None
        self.fds: dict[str, int] = {}
        self._emit = emit
        self.on_finished: list[Callable[[Job], Any]] = []

    # -- events ------------------------------------------------------------------
    def emit(self, event: str, data: dict) -> None:
        if self._emit is not None:
            self._emit(event, data)
        else:
            self.vm._emit(event, **data)

    def emit_status(self, status: Status) -> None:
        if self.options.cap("events"):
            self.emit("MIGRATION", {"status": status.value})

    def finished(self, job: Job) -> None:
        for cb in list(self.on_finished):
            cb(job)

    # -- state ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A migration of either direction is in progress (or listening)."""
        return self.current is not None and self.current.status.running

    @property
    def running(self) -> bool:
        """Capabilities and most parameters are fixed now: a migration is
        under way (a destination that only listens may still be set up, as
        QEMU's may between -incoming and the source connecting)."""
        if not self.busy:
            return False
        return not (isinstance(self.current, Incoming) and self.current.status is Status.SETUP)

    def info(self) -> dict[str, Any]:
        """query-migrate."""
        job = self.current
        if job is None:
            out: dict[str, Any] = {}
        else:
            addr = None
            if isinstance(job, Incoming) and job.address is not None and job.address.is_socket:
                a = job.address
                addr = [{"type": "inet", "host": a.host, "port": str(a.port)}
                        if a.kind == "tcp" else {"type": "unix", "path": a.path}]
            out = info(job.status, job.stats, error=job.error, socket_address=addr)
            if out.get("status") == "none":
                out = {}
        reasons = self.blockers.reasons(Mode.NORMAL)
        if reasons:
            out["blocked-reasons"] = reasons
        return out

    # -- fds (getfd / closefd) ---------------------------------------------------------
    def add_fd(self, name: str, fd: int) -> None:
        old = self.fds.pop(name, None)
        if old is not None:
            os.close(old)
        self.fds[name] = fd

    def close_fd(self, name: str) -> None:
        fd = self.fds.pop(name, None)
        if fd is None:
            raise MigrationError(f"File descriptor named '{name}' not found")
        os.close(fd)

    def close(self) -> None:
        if self.busy:
            self.current.cancel()  # type: ignore[union-attr]
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    # -- the commands ------------------------------------------------------------------
    def _check_idle(self) -> None:
        if self.busy:
            raise MigrationError("There's a migration process in progress")

    def migrate(self, uri: str) -> Outgoing:
        """Start migrating this VM to ``uri`` (a task); errors that need no
        I/O (a bad URI, a blocker, a migration running) raise here."""
        self._check_idle()
        try:
            parsed = parse_uri(uri)
        except UriError as exc:
            raise MigrationError(str(exc)) from None
        reasons = self.blockers.reasons(Mode.NORMAL)
        if reasons:
            raise MigrationError("disallowing migration: " + "; ".join(reasons))
        if isinstance(self.current, Incoming) and self.vm.state.value == "inmigrate":
            raise MigrationError("the VM is waiting for an incoming migration")
        job = Outgoing(self, parsed, self.fds)
        self.current = job
        job.task = asyncio.get_running_loop().create_task(job.run(), name="migrate")
        job.task.add_done_callback(job.task_done)
        return job

    async def incoming(self, uri: str) -> Incoming:
        """Wait for a migration on ``uri``; returns once listening."""
        self._check_idle()
        try:
            parsed = parse_uri(uri)
        except UriError as exc:
            raise MigrationError(str(exc)) from None
        job = Incoming(self, parsed, self.fds)
        self.current = job
        try:
            await job.start()
        except Exception as exc:
            job._finish(Status.FAILED, str(exc))
            raise MigrationError(str(exc)) from None
        return job

    def cancel(self) -> None:
        """migrate-cancel: a no-op unless a migration runs."""
        if self.current is not None:
            self.current.cancel()

    def continue_(self, state: str) -> None:
        if not isinstance(self.current, Outgoing):
            raise MigrationError("no outgoing migration")
        self.current.continue_(state)
