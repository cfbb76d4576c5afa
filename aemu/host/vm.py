"""One VM as a host holds it: the machine, its QMP server, its log file.

The machine's events go to the QMP clients as QEMU's events.  ``quit`` (from
the VM's own socket) ends the VM: a SHUTDOWN event with the cause, then the
machine stops, its sockets close and their files go away.  A VM whose guest
faults stays in ``guest-panicked`` until reset or destroyed; nothing it does
reaches another VM.
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from aemu.host.jobs import Jobs
from aemu.host.paths import Confinement
from aemu.host.server import QmpServer
from aemu.host.migration_commands import vm as vm_commands
from aemu.host.snapshots import StoreSource, VmSnapshots

log = logging.getLogger(__name__)


@dataclass
class VmConfig:
    """What a VM is made from (the host's vm-create arguments, resolved)."""
    name: str
    firmware: Optional[str] = None          # None: the bundled demo
    args: list[str] = field(default_factory=list)
    board: Optional[str] = None             # board file; None: the default board
    ram_size: Optional[int] = None
    cpu_hz: Optional[int] = None
    pace: str = "realtime"
    paused: bool = False
    uart: Optional[str] = None              # back-end spec for uart0
    fs_root: Optional[str] = None
    incoming: Optional[str] = None          # a migration URI, or "defer"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"firmware": self.firmware or "(demo)", "pace": self.pace}
        if self.board:
            out["board"] = self.board
        if self.args:
            out["args"] = list(self.args)
        return out


class HostedVm:
    """A machine with its QMP socket.  Build with ``await HostedVm.start(...)``."""

    def __init__(self, config: VmConfig, machine: Any, confinement: Confinement,
                 log_file: Optional[io.BufferedWriter] = None,
                 on_quit: Optional[Callable[["HostedVm"], Any]] = None,
                 snapshots: StoreSource = None, snapshot_name: Optional[str] = None) -> None:
        """``snapshots``: the snapshot store (or a function that opens it on
        first use); its snapshots of this VM go by ``snapshot_name``
        (default: the VM's name)."""
        self.config = config
        self.name = config.name
        self.machine = machine
        self.confinement = confinement
        self.server = QmpServer(vm_commands, self)
        self.jobs = Jobs(lambda name, data: self.server.broadcast(name, data))
        self.snapshots = VmSnapshots(snapshot_name or self.name, machine, snapshots)
        from aemu.migration import MigrationManager
        self.migration = MigrationManager(machine, blockers=self.snapshots.blockers)
        self.snapshots.busy = lambda: ("a migration of this VM is in progress; try again "
                                       "when it is done" if self.migration.busy else None)
        #: migrate-incoming's exit-on-error (aemu run --incoming ends on a failure)
        self.exit_on_error = True
        self.incoming_deferred = False
        self.qmp_address = ""
        self._log_file = log_file
        self._on_quit = on_quit
        self._closed = False
        self._closing: Optional[asyncio.Future] = None
        self.quit_requested = asyncio.Event()
        machine.add_listener(self._forward)

    def _forward(self, item: dict) -> None:
        self.server.broadcast(item["event"], item["data"] or None, item["timestamp"])

    async def open(self, qmp: str) -> None:
        """Start the machine and listen for QMP clients on ``qmp``."""
        try:
            await self.machine.start()
            self.qmp_address = await self.server.listen(qmp)
        except BaseException:
            await self._close_machine()
            raise

    def request_quit(self) -> None:
        """quit from the VM's socket: end the VM once the reply is out."""
        self.quit_requested.set()
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.close(reason="host-qmp-quit")))

    async def close(self, reason: str | None = "host-qmp-quit") -> None:
        """SHUTDOWN (guest false, ``reason``; none if ``reason`` is None) to the
        clients, then stop the machine, close the sockets, remove their files.
        A second call (quit's own close racing the host's) waits for the first
        to finish instead of returning while the sockets are still there."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str | None) -> None:
        await self.jobs.wait_all()        # a snapshot being written finishes first
        if reason is not None:
            self.server.broadcast("SHUTDOWN", {"guest": False, "reason": reason})
        self.migration.close()
        await self._close_machine()
        self.snapshots.forget()
        await self.server.close()
        if self._log_file is not None:
            self._log_file.close()
        if self._on_quit is not None:
            self._on_quit(self)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _close_machine(self) -> None:
        try:
            await self.machine.close()
        except Exception as exc:       # its loop already ended with an internal error
            log.warning("VM %s: %s", self.name, exc)

    def info(self) -> dict[str, Any]:
        state = self.machine.state
        out = {"name": self.name, "status": state.value, "running": state.value == "running",
               "qmp": self.qmp_address, "ram-size": self.machine.cpu.ram_size,
               **self.config.describe()}
        job = self.migration.current
        if job is not None and getattr(job, "address", None) is not None:
            out["incoming"] = str(job.address)
        return out


def open_log(path: Path) -> io.BufferedWriter:
    """The VM's log file, private to the user, appended to."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "ab", buffering=0)  # type: ignore[return-value]


async def run_with_qmp(machine: Any, qmp: str, confinement: Confinement,
                       announce: Callable[[str], None] = lambda where: None, *,
                       snapshots: StoreSource = None, snapshot_name: Optional[str] = None,
                       loadvm: Optional[str] = None, autostart: bool = True,
                       name: Optional[str] = None, incoming: Optional[str] = None,
                       incoming_settings: tuple = ([], {}),
                       announce_incoming: Callable[[str], None] = lambda where: None) -> Any:
    """``aemu run --qmp``: one VM with a QMP socket, as one QEMU process.  Ends
    when the guest ends (its result), or on ``quit`` or SIGTERM (None; the
    clients get SHUTDOWN with host-qmp-quit or host-signal, as from QEMU).
    ``snapshots``/``snapshot_name``: the snapshot store and the VM's name in
    it; ``loadvm``: load that snapshot first (the machine must have been
    built paused), then run unless ``autostart`` is false (QEMU's -loadvm, -S).
    ``name``: what query-name says (default: the machine's name).
    ``incoming``: wait for a migration on that URI first ("defer": until
    migrate-incoming), as QEMU's -incoming; a failed one ends the run with
    IncomingFailed unless migrate-incoming said exit-on-error false."""
    from aemu.hw.machine import ENDED
    from aemu.loop import RunState

    vm = HostedVm(VmConfig(name=name or machine.name), machine, confinement,
                  snapshots=snapshots, snapshot_name=snapshot_name)
    await vm.open(qmp)
    if loadvm is not None:
        try:
            await vm.snapshots.load(loadvm)
        except BaseException:
            await vm.close(reason=None)
            raise
        if autostart:
            machine.resume()
    failure: list[str] = []
    if incoming is not None:
        from aemu.migration import MigrationError, Status
        from aemu.migration.incoming import Incoming

        def on_finished(job: Any) -> None:
            # a VM loaded but not committed is an exact copy, stopped: keep it
            if isinstance(job, Incoming) and job.status is Status.FAILED and \
                    vm.exit_on_error and not job.loaded:
                failure.append(job.error or "failed")
                vm.quit_requested.set()
        vm.migration.on_finished.append(on_finished)
        machine.autostart = autostart
        try:
            caps, params = incoming_settings
            vm.migration.options.set_capabilities(caps)
            vm.migration.options.set_parameters(params)
            await start_incoming(vm, incoming, announce_incoming)
        except (MigrationError, ValueError) as exc:
            await vm.close(reason=None)
            raise IncomingFailed(str(exc)) from None
    announce(vm.qmp_address)
    reason = "host-qmp-quit"

    def on_sigterm() -> None:
        nonlocal reason
        reason = "host-signal"
        vm.quit_requested.set()

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        handled = True
    except (NotImplementedError, RuntimeError):    # not the main thread, or no signals
        handled = False
    async def guest_ended() -> None:
        # the guest's own end: a state that a snapshot load brought (an ended
        # or suspended guest, with no result of this run) does not end the run
        while True:
            await machine.wait_state(RunState.SUSPENDED, *ENDED)
            if machine.result is not None:
                return
            await machine.wait_state(*(s for s in RunState
                                       if s is not RunState.SUSPENDED and s not in ENDED))

    ended = asyncio.ensure_future(guest_ended())
    quit_ = asyncio.ensure_future(vm.quit_requested.wait())
    try:
        await asyncio.wait({ended, quit_}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)
        ended.cancel()
        quit_.cancel()
        quitting = vm.quit_requested.is_set()
        await vm.close(reason=reason if quitting and not failure else None)
    if failure:
        raise IncomingFailed(failure[0])
    return None if quitting else machine.result


class IncomingFailed(Exception):
    """An incoming migration failed (aemu run --incoming ends with it)."""


async def start_incoming(vm: HostedVm, uri: str,
                         announce: Callable[[str], None] = lambda where: None) -> None:
    """Put a hosted VM into inmigrate: listening on ``uri`` now, or waiting for
    migrate-incoming ("defer")."""
    if uri == "defer":
        vm.machine.await_migration()
        vm.incoming_deferred = True
        return
    job = await vm.migration.incoming(uri)
    announce(str(job.address))
