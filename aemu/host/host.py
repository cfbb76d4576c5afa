"""``aemu serve``: many VMs on one event loop, a host control socket, a QMP
socket per VM.

    host = Host(state_dir="/tmp/s", allow_dirs=["/srv/fw"])
    await host.start()                   # state dir, lock, host.qmp
    vm = await host.create_vm(VmConfig(name="a", firmware="/srv/fw/x.elf"))
    await host.serve_forever()           # until quit or SIGTERM/SIGINT

Each VM runs as a task of the same loop (its slices are short), so one host
process holds hundreds of idle VMs cheaply.  A guest that faults only ends
its own VM's run; an internal error in one VM is reported and contained.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import io
import logging
import os
import resource
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any, Optional

from aemu.host.host_commands import host as host_commands
from aemu.host.paths import Confinement, PathError, check_name, default_state_dir, \
    make_private_dir
from aemu.host.server import QmpServer
from aemu.host.vm import HostedVm, VmConfig, open_log
from aemu.savevm.store import SnapshotStore
from aemu.transport import sockets

log = logging.getLogger(__name__)


class HostError(Exception):
    """The host cannot start, or a VM cannot be made (the message says why)."""


def raise_fd_limit() -> int:
    """Lift the soft open-file limit to the hard one: each VM holds a few
    sockets and a log file.  Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def bundled_demo() -> str:
    from importlib.resources import files

    path = files("aemu.demo") / "demo.elf"
    if not path.is_file():
        raise HostError("the bundled demo is missing from this installation")
    return os.fspath(path)  # type: ignore[arg-type]


class Host:
    def __init__(self, state_dir: "str | os.PathLike | None" = None, *,
                 listen: Optional[str] = None, allow_dirs: "list[str | os.PathLike]" = ()
                 ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.state_dir = self.state_dir.expanduser().absolute()
        self.vms_dir = self.state_dir / "vms"
        self.snapshots_dir = self.state_dir / "snapshots"
        #: the snapshot store every VM of this host saves to (open after start())
        self.snapshots: Optional[SnapshotStore] = None
        self.listen_spec = listen or f"unix:{self.state_dir / 'host.qmp'}"
        self.confinement = Confinement([self.state_dir, *allow_dirs])
        self.vms: dict[str, HostedVm] = {}
        self.server = QmpServer(host_commands, self)
        self.address = ""
        self.started = time.time()
        self._lock_fd: Optional[int] = None
        self._stopping: Optional[asyncio.Event] = None
        self._stop_reason = "host-qmp-quit"
        self._creating: set[str] = set()
        self._forgotten = 0

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        try:
            make_private_dir(self.state_dir)
            make_private_dir(self.vms_dir)
        except (OSError, PathError) as exc:
            raise HostError(f"state dir {self.state_dir}: {exc}") from exc
        self._lock()
        try:
            self.snapshots = SnapshotStore(self.snapshots_dir)
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise HostError(f"snapshot store {self.snapshots_dir}: {exc}") from exc
        raise_fd_limit()
        self._stopping = asyncio.Event()
        try:
            self.address = await self.server.listen(self.listen_spec)
        except sockets.EndpointError as exc:
            self._close_store()
            self._unlock()
            raise HostError(f"--listen {self.listen_spec}: {exc}") from exc

    def _lock(self) -> None:
        path = self.state_dir / "host.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HostError(f"another aemu serve uses {self.state_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def request_stop(self, reason: str = "host-qmp-quit") -> None:
        """End serve_forever(): every VM shuts down with ``reason``."""
        self._stop_reason = reason
        if self._stopping is not None:
            self._stopping.set()

    async def serve_forever(self, *, signals: bool = True) -> None:
        """Run until ``quit`` on the host socket, or SIGTERM/SIGINT; then shut down."""
        assert self._stopping is not None, "start() first"
        loop = asyncio.get_running_loop()
        handled = []
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop, "host-signal")
                    handled.append(sig)
        try:
            await self._stopping.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.shutdown(self._stop_reason)

    async def shutdown(self, reason: str = "host-qmp-quit") -> None:
        """Stop every VM, close every socket, remove their files."""
        await self.server.close()
        await asyncio.gather(*(vm.close(reason=reason) for vm in list(self.vms.values())),
                             return_exceptions=True)
        self.vms.clear()
        self._close_store()
        self._unlock()

    def _close_store(self) -> None:
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots = None

    # -- VMs -----------------------------------------------------------------------------------
    def resolve(self, config: VmConfig) -> VmConfig:
        """Check a request's name and paths against the host's rules."""
        try:
            check_name(config.name)
            conf = self.confinement
            if config.firmware is not None:
                config.firmware = conf.check(config.firmware, "firmware")
            if config.board is not None:
                config.board = conf.check(config.board, "board")
            if config.fs_root is not None:
                config.fs_root = conf.check(config.fs_root, "fs-root")
                if not os.path.isdir(config.fs_root):
                    raise PathError(f"fs-root {config.fs_root!r} is not a directory")
            config.uart = self._uart_spec(config)
            if config.incoming not in (None, "defer"):
                from aemu.transport.uri import UriError, parse_uri
                try:
                    uri = parse_uri(config.incoming)
                except UriError as exc:
                    raise PathError(f"incoming: {exc}") from None
                if uri.kind in ("file", "unix"):
                    conf.check(uri.path, f"incoming {uri.kind}", must_exist=False)
        except PathError as exc:
            raise HostError(str(exc)) from None
        return config

    def _uart_spec(self, config: VmConfig) -> str:
        spec = config.uart
        if spec is None or spec == "unix":
            return f"unix:{self.vms_dir / (config.name + '.uart0')}"
        if spec == "none" or spec.startswith("tcp:"):
            return spec
        kind, _, path = spec.partition(":")
        if kind in ("unix", "file") and path:
            return f"{kind}:{self.confinement.check(path, 'uart', must_exist=False)}"
        raise PathError(f"uart {spec!r}: use none, unix (a socket in the state dir), "
                        "unix:PATH, file:PATH or tcp:[HOST:]PORT")

    async def create_vm(self, config: VmConfig) -> HostedVm:
        """Build, start and publish a VM (its QMP socket is vms/NAME.qmp)."""
        from aemu.hw.board import BoardError, default_board, load_board
        from aemu.hw.chardev import BackendError
        from aemu.hw.loader import LoadError
        from aemu.hw.machine import Machine, MachineError

        config = self.resolve(config)
        name = config.name
        if name in self.vms or name in self._creating:
            raise HostError(f"a VM named {name!r} exists already")
        self._creating.add(name)
        log_file: Optional[io.BufferedWriter] = None
        try:
            try:
                board = load_board(config.board) if config.board else default_board()
                changes = {k: v for k, v in (("ram_size", config.ram_size),
                                             ("cpu_hz", config.cpu_hz)) if v is not None}
                if changes:
                    board = board.with_changes(**changes)
                board.validate()
            except (BoardError, OSError) as exc:
                raise HostError(f"board: {exc}") from None
            log_path = self.vms_dir / f"{name}.log"
            fresh = not log_path.exists()
            log_file = open_log(log_path)

            def warn(text: str, f: io.BufferedWriter = log_file) -> None:
                with contextlib.suppress(OSError, ValueError):
                    f.write(f"aemu: warning: {text}\n".encode())

            backends: dict[str, Any] = {}
            uarts = list(board.uart_backends())
            if uarts:
                backends[uarts[0]] = config.uart
                for other in uarts[1:]:
                    backends[other] = "none"
            try:
                machine = Machine(board, config.firmware or bundled_demo(), args=config.args,
                                  name=name, pace=config.pace, fs_root=config.fs_root,
                                  stdin=io.BytesIO(), stdout=log_file, stderr=log_file,
                                  warn=warn, backends=backends,
                                  start_paused=config.paused or config.incoming is not None)
            except (LoadError, MachineError) as exc:
                raise HostError(str(exc)) from None
            vm = HostedVm(config, machine, self.confinement, log_file,
                          on_quit=self._forget, snapshots=self.snapshots)
            try:
                await vm.open(f"unix:{self.vms_dir / (name + '.qmp')}")
            except (BackendError, sockets.EndpointError, OSError) as exc:
                raise HostError(f"VM {name}: {exc}") from None
            if config.incoming is not None:
                from aemu.host.vm import start_incoming
                from aemu.migration import MigrationError
                machine.autostart = not config.paused
                try:
                    await start_incoming(vm, config.incoming)
                except MigrationError as exc:
                    await vm.close(reason=None)
                    raise HostError(f"VM {name}: incoming: {exc}") from None
            log_file = None            # the VM owns it now
            self.vms[name] = vm
            # a host holds many long-lived VMs of ~1000 objects each: keep them
            # out of the collector's full passes (which grow with the host and
            # stall every VM); destroy_vm unfreezes now and then
            gc.freeze()
            return vm
        finally:
            self._creating.discard(name)
            if log_file is not None:           # failed: leave no trace of the attempt
                log_file.close()
                if fresh and log_path.stat().st_size == 0:
                    log_path.unlink()

    def _forget(self, vm: HostedVm) -> None:
        if self.vms.get(vm.name) is vm:
            del self.vms[vm.name]
        self._forgotten += 1
        if self._forgotten % 32 == 0:   # let the collector see the frozen VMs that are gone
            gc.unfreeze()

    async def destroy_vm(self, name: str) -> None:
        vm = self.vms.get(name)
        if vm is None:
            raise HostError(f"no VM named {name!r}")
        await vm.close(reason="host-qmp-quit")

    def info(self) -> dict[str, Any]:
        return {"state-dir": str(self.state_dir), "pid": os.getpid(), "qmp": self.address,
                "vms": len(self.vms), "allowed-dirs": list(self.confinement.dirs),
                "uptime": round(time.time() - self.started, 3)}
