"""The host fixtures: one ``aemu serve`` process per test session
(``aemu_serve``) in a temporary state dir, and per test a QMP client of its
control socket (``aemu_host``) that removes the test's VMs afterwards."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

    from aemu.host.client import Client

#: seconds the host may take to come up (a cold interpreter imports the core)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServeError(Exception):
    """The serve process did not start (its stderr says why)."""


class ServeProcess:
    """``python -m aemu serve --state-dir DIR --allow-dir ...`` running
    until ``stop()``.  The state dir is a fresh directory under the system's
    temporary directory (not pytest's: socket paths must stay short)."""

    def __init__(self, allow_dirs: Iterable["str | os.PathLike[str]"] = (),
                 loop: str = "uvloop") -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="aemu-serve-"))
        self.allow_dirs = sorted({str(Path(d).resolve()) for d in allow_dirs})
        self.socket = str(self.state_dir / "host.qmp")
        self.address = f"unix:{self.socket}"
        self.log_path = self.state_dir.with_name(self.state_dir.name + ".stderr")
        args = [sys.executable, "-m", "aemu", "serve", "--state-dir", str(self.state_dir),
                "--loop", loop]
        for d in self.allow_dirs:
            args += ["--allow-dir", d]
        with open(self.log_path, "wb") as err:
            # cwd outside any source tree: `python -m aemu` imports the installed aemu
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err,
                                          cwd=tempfile.gettempdir())
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if re.search(r"host QMP on \S+\n", self.stderr):
                return
            if self.popen.poll() is not None:
                raise ServeError(f"aemu serve exited with status {self.popen.returncode}:\n"
                                 f"{self.stderr}")
            time.sleep(0.02)
        raise ServeError(f"aemu serve did not start within {START_TIMEOUT:g} s:\n{self.stderr}")

    def vm_socket(self, name: str) -> str:
        return str(self.state_dir / "vms" / f"{name}.qmp")

    def stop(self) -> int | None:
        """SIGTERM (every VM stops), then kill if it hangs; the state dir goes."""
        status = None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                status = self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                status = self.popen.wait(STOP_TIMEOUT)
        else:
            status = self.popen.returncode
        shutil.rmtree(self.state_dir, ignore_errors=True)
        try:
            self.log_path.unlink()
        except OSError:
            pass
        return status


class AemuHost:
    """The ``aemu_host`` fixture: a QMP client of the serve host's control
    socket, with helpers.  ``qmp`` is the connected ``qemu.qmp`` client (of
    the loop the fixture set up on); ``execute`` and ``vm`` (re)connect on
    whichever loop calls them.  aemu's commands may be named without their
    ``__org.aemu_`` prefix."""

    def __init__(self, serve: ServeProcess) -> None:
        self.serve = serve
        self._client: "Client | None" = None
        self._vm_clients: list["Client"] = []

    @property
    def state_dir(self) -> Path:
        return self.serve.state_dir

    @property
    def address(self) -> str:
        """The host control socket (``unix:PATH``)."""
        return self.serve.address

    @property
    def qmp(self) -> Any:
        """The connected ``qemu.qmp.QMPClient`` of the control socket."""
        if self._client is None:
            raise RuntimeError("aemu_host is not connected yet: await aemu_host.connect()")
        return self._client.qmp

    async def connect(self) -> "Client":
        """The control socket's client on the running loop (connected if needed)."""
        client = self._client
        if client is None or _loop_of(client) is not _running_loop():
            client = await self._open(self.serve.socket, "aemu-test-host")
            self._client = client
        return client

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run a host command (``vm-create``, ``vm-list``, ``query-host``...)."""
        client = await self.connect()
        return await client.execute(command, arguments)

    async def create_vm(self, name: str, firmware: "str | os.PathLike[str] | None" = None,
                        **options: Any) -> dict[str, Any]:
        """``vm-create``: ``firmware`` (made absolute; it must be under an
        allowed directory), and the command's other arguments as keywords
        (``args=[...]``, ``paused=True``, ``pace="fast"``, ``ram_size=...``:
        underscores become dashes).  Returns the VM's info."""
        request: dict[str, Any] = {"name": name}
        if firmware is not None:
            request["firmware"] = str(Path(firmware).resolve())
        for key, value in options.items():
            if key in ("board", "fs_root") and value is not None:
                value = str(Path(value).resolve())
            request[key.replace("_", "-")] = value
        return await self.execute("vm-create", request)

    async def vm(self, name: str) -> "Client":
        """A client of VM ``name``'s own QMP socket (closed after the test)."""
        client = await self._open(self.serve.vm_socket(name), f"aemu-test-{name}")
        self._vm_clients.append(client)
        return client

    async def close(self) -> None:
        """Remove every VM of the host (the next test starts with none) and
        disconnect."""
        try:
            client = await self.connect()
            for vm in await client.execute("vm-list"):
                try:
                    await client.execute("vm-destroy", {"name": vm["name"]})
                except Exception:  # noqa: BLE001 - it went away by itself meanwhile
                    pass
        finally:
            clients, self._vm_clients = self._vm_clients, []
            if self._client is not None:
                clients.append(self._client)
                self._client = None
            running = _running_loop()
            for c in clients:
                if _loop_of(c) is running:
                    await c.close()

    @staticmethod
    async def _open(address: str, name: str) -> "Client":
        from aemu.host.client import Client

        client = Client(name)
        await client.connect(address)
        client._aemu_loop = _running_loop()  # type: ignore[attr-defined]
        return client


def _running_loop() -> "asyncio.AbstractEventLoop":
    import asyncio
    return asyncio.get_running_loop()


def _loop_of(client: "Client") -> Any:
    return getattr(client, "_aemu_loop", None)


__all__ = ["AemuHost", "ServeError", "ServeProcess"]
