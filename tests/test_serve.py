"""`aemu serve`, `aemu qmp` and `aemu run --qmp` as real subprocesses, driven
over their sockets with QEMU's own client library (qemu.qmp).

Every await is bounded (``T`` seconds, and ``run()`` bounds a whole test);
every subprocess is stopped in a finally; clients disconnect before the
server goes away.  Sockets live in a short directory under /tmp: a Unix
socket path must fit in 107 bytes, and pytest's tmp_path may not.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
from qemu.qmp import ExecuteError, QMPClient

from conftest import FIRMWARE

IRQ = FIRMWARE / "irq"
IDLE = str(IRQ / "idle.elf")        # idle [SECONDS [HZ]]: TIMER0 at HZ, eiwait, exit 0
FAULT = str(IRQ / "fault.elf")      # fault [DELAY_MS]: waits, then loads from 0x1800000
#: the smallest RAM idle.elf (and fault.elf) load into: the BSP's last
#: segment (2 MiB heap, 256 KiB stack, 1 KiB interrupt stack) ends at
#: __RAM_USED_END = 0x24f180; the default board has 20 MiB
SMALL_RAM = 0x24F180
T = 10.0                            #: seconds any one await may take
VM_COUNT = 200


# -- helpers ---------------------------------------------------------------------------

def run(coro: Awaitable[Any], timeout: float = 60.0) -> Any:
    """Run a test's coroutine on a fresh loop, bounded as a whole."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


#: subprocesses run outside the repository: from its root, ``python -m aemu``
#: would import the source tree instead of the installed (built) package
NEUTRAL_CWD = tempfile.gettempdir()


def aemu_cmd(*args: Any) -> list[str]:
    return [sys.executable, "-m", "aemu", *map(str, args)]


def mode(path: "str | Path") -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def wait_for(predicate: Callable[[], Any], timeout: float = T, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def async_wait_for(predicate: Callable[[], Any], timeout: float = T,
                         what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Proc:
    """A subprocess whose stderr goes to a file that can be read while it runs."""

    def __init__(self, args: list[str], workdir: Path, name: str, **kw: Any) -> None:
        self.err_path = workdir / f"{name}.stderr"
        self.out_path = workdir / f"{name}.stdout"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen(args, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, cwd=workdir, **kw)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_stderr(self, pattern: str, timeout: float = T) -> re.Match:
        """The first match of ``pattern`` in the stderr written so far."""
        def found():
            m = re.search(pattern, self.stderr)
            if m is None and self.popen.poll() is not None:
                raise AssertionError(f"exited with {self.popen.returncode} before "
                                     f"{pattern!r}: {self.stderr}")
            return m
        return wait_for(found, timeout, f"{pattern!r} on stderr")

    def wait(self, timeout: float = T) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(T)


class Serve(Proc):
    """`aemu serve --state-dir STATE --allow-dir tests/firmware [EXTRA...]`."""

    def __init__(self, base: Path, *extra: Any, state: "Path | None" = None,
                 name: str = "serve") -> None:
        self.state_dir = state or base / "state"
        super().__init__(aemu_cmd("serve", "--state-dir", self.state_dir,
                                  "--allow-dir", FIRMWARE, *extra), base, name)
        try:
            m = self.wait_stderr(r"host QMP on (\S+)\n")
        except BaseException:
            self.kill()
            raise
        self.address = m.group(1)
        self.socket = str(self.state_dir / "host.qmp")
        if self.address.startswith("unix:"):
            assert self.address == f"unix:{self.socket}"
            assert os.path.exists(self.socket)

    def vm_socket(self, name: str) -> str:
        return str(self.state_dir / "vms" / f"{name}.qmp")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the host, wait for it, check it said nothing unexpected."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def wait(self, timeout: float = T) -> int:
        status = super().wait(timeout)
        lines = self.stderr.splitlines()
        assert lines and lines[0].startswith("aemu: serve: state dir "), self.stderr
        assert lines[1:] == [], self.stderr      # no tracebacks, no pending tasks
        return status


@pytest.fixture
def base() -> Iterator[Path]:
    """A short private directory under /tmp (Unix socket paths must stay short)."""
    path = Path(tempfile.mkdtemp(prefix="aemu", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes to kill at the end of the test, whatever happened."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()


@pytest.fixture
def serve(base: Path, procs: list[Proc]) -> Callable[..., Serve]:
    def start(*extra: Any, **kw: Any) -> Serve:
        s = Serve(base, *extra, **kw)
        procs.append(s)
        return s
    return start


async def connect(address: "str | tuple[str, int]", name: str = "test") -> QMPClient:
    """A negotiated qemu.qmp client (connect() does qmp_capabilities)."""
    client = QMPClient(name)
    await asyncio.wait_for(client.connect(address), T)
    return client


async def execute(client: QMPClient, command: str, arguments: "dict | None" = None,
                  timeout: float = T) -> Any:
    return await asyncio.wait_for(client.execute(command, arguments), timeout)


async def execute_error(client: QMPClient, command: str, arguments: "dict | None" = None
                        ) -> ExecuteError:
    with pytest.raises(ExecuteError) as info:
        await execute(client, command, arguments)
    return info.value


def error_desc(exc: ExecuteError) -> str:
    return exc.error.error.desc


async def next_event(client: QMPClient, timeout: float = T) -> dict:
    event = await asyncio.wait_for(client.events.get(), timeout)
    return dict(event)


async def disconnect(*clients: QMPClient) -> None:
    """Leave quietly (a server that closed first makes disconnect() re-raise
    its EOFError)."""
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), T)


async def status(client: QMPClient) -> str:
    return (await execute(client, "query-status"))["status"]


@contextlib.asynccontextmanager
async def hosted_vm(host: Any, name: str, **create: Any):
    """Clients of ``host``'s control socket and of a new VM ``name`` (made
    with ``create_vm(**create)``); both disconnected afterwards."""
    h = await connect(host.socket, "host")
    vm = None
    try:
        await create_vm(h, name, **create)
        vm = await connect(host.vm_socket(name), name)
        yield h, vm
    finally:
        if vm is not None:
            await disconnect(vm)
        await disconnect(h)


async def create_vm(host: QMPClient, name: str, firmware: str = IDLE, **args: Any) -> dict:
    request = {"name": name, "firmware": firmware, **{k.replace("_", "-"): v
                                                       for k, v in args.items()}}
    return await execute(host, "__org.aemu_vm-create", request)


async def on_each(paths: list[str], command: str, batch: int = 50,
                  arguments: "dict | None" = None) -> list[Any]:
    """``command`` on each socket, over connections opened ``batch`` at a time
    (and closed again)."""
    results: list[Any] = []
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        opened = await asyncio.gather(*(connect(p, f"c{start + i}")
                                        for i, p in enumerate(chunk)), return_exceptions=True)
        clients = [c for c in opened if isinstance(c, QMPClient)]
        try:
            for path, c in zip(chunk, opened):
                if not isinstance(c, QMPClient):
                    raise AssertionError(f"cannot connect to {path}: {c!r}")
            results += await asyncio.gather(*(execute(c, command, arguments)
                                              for c in clients))
        finally:
            await asyncio.gather(*(disconnect(c) for c in clients))
    return results


def raw_connect(path: str) -> tuple[socket.socket, dict]:
    """A plain Unix socket client: the socket and the greeting."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(T)
    sock.connect(path)
    return sock, json.loads(raw_line(sock))


def raw_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


# -- one VM's life ----------------------------------------------------------------------

def test_vm_lifecycle_events(serve):
    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        try:
            info = await create_vm(h, "life", args=["1000", "10"], paused=True)
            path = host.vm_socket("life")
            assert info["qmp"] == f"unix:{path}"
            assert (info["name"], info["status"], info["running"]) == ("life", "paused", False)
            assert info["firmware"] == IDLE and info["pace"] == "realtime"
            assert info["args"] == ["1000", "10"]
            assert [vm["name"] for vm in await execute(h, "__org.aemu_vm-list")] == ["life"]

            v = await connect(path, "life")
            try:
                assert v.greeting.QMP.version["qemu"]["major"] >= 9
                assert await execute(v, "query-status") == {"running": False,
                                                            "status": "paused"}
                assert await execute(v, "query-name") == {"name": "life"}
                assert await execute(v, "human-monitor-command",
                                     {"command-line": "info status"}) == "VM status: paused\r\n"
                run0 = await execute(v, "__org.aemu_query-run")
                assert run0["cycles"] == 0 and "exit" not in run0

                assert await execute(v, "cont") == {}
                assert (await next_event(v))["event"] == "RESUME"
                assert await execute(v, "query-status") == {"running": True,
                                                            "status": "running"}
                await asyncio.sleep(0.15)               # one 10 Hz tick at least

                assert await execute(v, "stop") == {}
                event = await next_event(v)
                assert event["event"] == "STOP" and "data" not in event
                assert set(event["timestamp"]) == {"seconds", "microseconds"}
                assert await status(v) == "paused"
                stopped = await execute(v, "__org.aemu_query-run")
                assert stopped["cycles"] > 0 and stopped["insns"] > 0
                await asyncio.sleep(0.05)
                assert (await execute(v, "__org.aemu_query-run"))["cycles"] == stopped["cycles"]

                assert await execute(v, "system_reset") == {}
                event = await next_event(v)
                assert event["event"] == "RESET"
                assert event["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
                assert await status(v) == "paused"       # a paused VM stays paused
                # back at the entry point (the clock and counts go on: time is monotonic)
                assert (await execute(v, "__org.aemu_query-run"))["pc"] == run0["pc"]

                assert await execute(v, "quit") == {}
                event = await next_event(v)
                assert event["event"] == "SHUTDOWN"
                assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}
            finally:
                await disconnect(v)
            await async_wait_for(lambda: not os.path.exists(path), what="the VM socket to go")
            assert not os.path.exists(host.vm_socket("life")[:-4] + ".uart0")
            assert await execute(h, "__org.aemu_vm-list") == []
            assert (await execute(h, "__org.aemu_query-host"))["vms"] == 0
            # the name is free again
            again = await create_vm(h, "life", args=["0", "10"], paused=True)
            assert again["status"] == "paused"
        finally:
            await disconnect(h)

    run(main())
    assert host.stop() == 0


def test_guest_exit_and_reset(serve):
    """A guest that ends by itself: SHUTDOWN (guest), cont refused, reset to
    prelaunch, cont runs it again."""
    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        v = None
        try:
            # idle 1 10: ten ticks of 100 ms, then exit(0): one second (realtime)
            await create_vm(h, "short", args=["1", "10"], paused=True)
            v = await connect(host.vm_socket("short"), "short")
            await execute(v, "cont")
            assert (await next_event(v))["event"] == "RESUME"
            event = await next_event(v, timeout=T)
            assert event["event"] == "SHUTDOWN"
            assert event["data"] == {"guest": True, "reason": "guest-shutdown"}
            assert await execute(v, "query-status") == {"running": False, "status": "shutdown"}
            ended = await execute(v, "__org.aemu_query-run")
            assert ended["exit"]["reason"] == "exit" and ended["exit"]["status"] == 0
            assert 1_000_000_000 <= ended["virtual-ns"] < 1_100_000_000

            err = await execute_error(v, "cont")
            assert err.error_class == "GenericError"
            assert "Resetting the Virtual Machine is required" in error_desc(err)
            assert await status(v) == "shutdown"

            await execute(v, "system_reset")
            event = await next_event(v)
            assert (event["event"], event["data"]) == (
                "RESET", {"guest": False, "reason": "host-qmp-system-reset"})
            assert await execute(v, "query-status") == {"running": False,
                                                        "status": "prelaunch"}
            assert "exit" not in await execute(v, "__org.aemu_query-run")

            await execute(v, "cont")
            assert (await next_event(v))["event"] == "RESUME"
            assert await execute(v, "query-status") == {"running": True, "status": "running"}
            # the VM is still listed, and still there after its guest ended
            assert [vm["status"] for vm in await execute(h, "__org.aemu_vm-list")] == ["running"]
        finally:
            if v is not None:
                await disconnect(v)
            await disconnect(h)

    run(main())
    assert host.stop() == 0


def test_vm_create_and_destroy_arguments(serve):
    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        v = None
        try:
            for bad, why in [({"bogus": 1}, "Parameter 'bogus' is unexpected"),
                             ({"pace": "slow"}, "does not accept value 'slow'"),
                             ({"ram-size": (64 << 20) + 2}, "must be from"),
                             ({"args": [1]}, "expected: string")]:
                err = await execute_error(h, "__org.aemu_vm-create",
                                          {"name": "a", "firmware": IDLE, **bad})
                assert err.error_class == "GenericError" and why in error_desc(err), bad
            # up to the default board's own 20 MiB (its MMIO starts there); the
            # argument's bound is the core's (64 MiB), the board checks the rest
            for name, size in (("r16", (16 << 20) + 2), ("r20", 20 << 20)):
                info = await create_vm(h, name, args=["0", "10"], paused=True, ram_size=size)
                assert info["ram-size"] == size
            err = await execute_error(h, "__org.aemu_vm-create", {
                "name": "r21", "firmware": IDLE, "ram-size": 21 << 20})
            assert "overlaps RAM" in error_desc(err)
            await create_vm(h, "a", args=["1000", "10"])
            err = await execute_error(h, "__org.aemu_vm-create", {"name": "a", "firmware": IDLE})
            assert "exists already" in error_desc(err)

            v = await connect(host.vm_socket("a"), "a")
            assert await execute(h, "__org.aemu_vm-destroy", {"name": "a"}) == {}
            event = await next_event(v)
            assert (event["event"], event["data"]) == (
                "SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
            assert not os.path.exists(host.vm_socket("a"))
            err = await execute_error(h, "__org.aemu_vm-destroy", {"name": "a"})
            assert err.error_class == "DeviceNotFound"
            assert sorted(vm["name"] for vm in await execute(h, "__org.aemu_vm-list")) == [
                "r16", "r20"]
        finally:
            if v is not None:
                await disconnect(v)
            await disconnect(h)

    run(main())
    assert host.stop() == 0


# -- many VMs in one host ---------------------------------------------------------------

def test_200_vms_and_a_fault(serve):
    """200 small VMs (even ones running a 10 Hz idle guest in real time, odd
    ones paused) all answer on their own sockets; one more VM faults and only
    it stops."""
    host = serve()
    names = [f"vm{i:03d}" for i in range(VM_COUNT)]
    paths = [host.vm_socket(n) for n in names]

    async def main():
        h = await connect(host.socket, "host")
        f = None
        try:
            # one byte too little for the BSP's layout: a clear error, no VM
            err = await execute_error(h, "__org.aemu_vm-create", {
                "name": "tiny", "firmware": IDLE, "ram-size": SMALL_RAM - 2})
            assert "outside guest RAM" in error_desc(err)

            t0 = time.monotonic()
            for i, name in enumerate(names):
                await create_vm(h, name, args=["1000", "10"], ram_size=SMALL_RAM,
                                paused=bool(i % 2))
            created = time.monotonic() - t0
            listed = await execute(h, "__org.aemu_vm-list")
            assert sorted(vm["name"] for vm in listed) == names
            assert {vm["ram-size"] for vm in listed} == {SMALL_RAM}

            statuses = await on_each(paths, "query-status")
            assert statuses == [{"running": not i % 2, "status": "paused" if i % 2 else "running"}
                                for i in range(VM_COUNT)]
            before = await on_each(paths, "__org.aemu_query-run")

            # the faulting VM: runs 100 ms of virtual (= wall) time, then loads
            # from 0x1800000
            await create_vm(h, "faulty", FAULT, ram_size=SMALL_RAM, paused=True)
            f = await connect(host.vm_socket("faulty"), "faulty")
            await execute(f, "cont")
            assert (await next_event(f))["event"] == "RESUME"
            event = await next_event(f)
            assert event["event"] == "GUEST_PANICKED" and event["data"] == {"action": "pause"}
            assert await execute(f, "query-status") == {"running": False,
                                                        "status": "guest-panicked"}
            info = await execute(f, "__org.aemu_query-run")
            assert info["exit"]["reason"] == "fault"
            assert info["exit"]["status"] == 139
            assert "illegal address 0x1800000" in info["exit"]["message"]
            assert "(vector 12)" in info["exit"]["message"]
            assert info["virtual-ns"] >= 100_000_000
            err = await execute_error(f, "cont")
            assert "Resetting the Virtual Machine is required" in error_desc(err)
            # the panicked VM still answers and can be inspected
            regs = await execute(f, "__org.aemu_query-registers")
            assert regs["pc"] == info["exit"]["pc"]
            # a reset brings it back: it runs and faults again
            await execute(f, "system_reset")
            assert (await next_event(f))["event"] == "RESET"
            assert await status(f) == "prelaunch"
            await execute(f, "cont")
            assert [(await next_event(f))["event"] for _ in range(2)] == [
                "RESUME", "GUEST_PANICKED"]
            assert (await execute(f, "__org.aemu_query-run"))["exit"]["reason"] == "fault"

            await asyncio.sleep(0.3)         # at least two ticks of every running guest
            after = await on_each(paths, "__org.aemu_query-run")
            for i, (b, a) in enumerate(zip(before, after)):
                if i % 2:
                    assert (a["status"], a["cycles"]) == ("paused", 0), names[i]
                else:
                    assert a["status"] == "running", names[i]
                    assert a["cycles"] > b["cycles"], names[i]
                    assert "exit" not in a, names[i]
            host_info = await execute(h, "__org.aemu_query-host")
            assert host_info["vms"] == VM_COUNT + 1
            return created
        finally:
            if f is not None:
                await disconnect(f)
            await disconnect(h)

    created = run(main(), timeout=90)
    assert created < 30, f"creating {VM_COUNT} VMs took {created:.1f} s"
    assert host.stop() == 0
    vms = host.state_dir / "vms"
    left = sorted(p.name for p in vms.iterdir())
    # (a VM that could not be made leaves no log behind)
    assert left == sorted([f"{n}.log" for n in names] + ["faulty.log"])


# -- security ---------------------------------------------------------------------------

def test_private_state_dir_and_files(serve, base):
    state = base / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    host = serve(state=state)

    async def main():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "sec", args=["1000", "10"], paused=True)
        finally:
            await disconnect(h)

    run(main())
    try:
        assert mode(state) == 0o700
        assert mode(state / "vms") == 0o700
        assert stat.S_ISSOCK(os.lstat(host.socket).st_mode) and mode(host.socket) == 0o600
        vms = state / "vms"
        for name in ("sec.qmp", "sec.uart0"):
            assert stat.S_ISSOCK(os.lstat(vms / name).st_mode), name
            assert mode(vms / name) == 0o600, name
        assert mode(vms / "sec.log") == 0o600
        assert mode(state / "host.lock") == 0o600
    finally:
        assert host.stop() == 0


def test_paths_are_confined(serve, base):
    host = serve()
    outside = base / "outside"
    outside.mkdir()
    shutil.copy(IDLE, outside / "idle.elf")
    state = host.state_dir
    (state / "link.elf").symlink_to(outside / "idle.elf")
    (state / "link.bin").symlink_to(outside / "mem.bin")

    async def main():
        h = await connect(host.socket, "host")
        v = None
        try:
            for firmware in (str(outside / "idle.elf"), str(state / "link.elf")):
                err = await execute_error(h, "__org.aemu_vm-create",
                                          {"name": "bad", "firmware": firmware})
                assert err.error_class == "GenericError"
                assert "--allow-dir" in error_desc(err), error_desc(err)
            err = await execute_error(h, "__org.aemu_vm-create",
                                      {"name": "bad", "firmware": "tests/firmware/irq/idle.elf"})
            assert "absolute" in error_desc(err)
            err = await execute_error(h, "__org.aemu_vm-create", {"name": "../bad"})
            assert "invalid name" in error_desc(err)
            assert await execute(h, "__org.aemu_vm-list") == []

            await create_vm(h, "mem", args=["1000", "10"], paused=True)
            v = await connect(host.vm_socket("mem"), "mem")
            for target in (outside / "mem.bin", state / "link.bin", "relative.bin"):
                err = await execute_error(v, "pmemsave", {"val": 4, "size": 256,
                                                          "filename": str(target)})
                assert err.error_class == "GenericError"
            assert not (outside / "mem.bin").exists()

            dump = state / "dump.bin"
            assert await execute(v, "pmemsave", {"val": 4, "size": 4096,
                                                 "filename": str(dump)}) == {}
            raw = await execute(v, "__org.aemu_read-memory", {"addr": 4, "size": 4096})
            expected = base64.b64decode(raw["data"])
            assert dump.read_bytes() == expected and len(expected) == 4096
            assert expected.count(0) < 4096               # the program's code
            assert mode(dump) == 0o600
            # memsave is the same (no MMU)
            assert await execute(v, "memsave", {"val": 4, "size": 16, "filename": str(dump)}) \
                == {}
            assert dump.read_bytes() == expected[:16]
            err = await execute_error(v, "pmemsave", {"val": SMALL_RAM * 100, "size": 16,
                                                      "filename": str(dump)})
            assert "outside guest RAM" in error_desc(err)
        finally:
            if v is not None:
                await disconnect(v)
            await disconnect(h)

    run(main())
    assert host.stop() == 0


def test_listen_tcp_loopback(serve):
    host = serve("--listen", "tcp:127.0.0.1:0")
    m = re.fullmatch(r"tcp:127\.0\.0\.1:(\d+)", host.address)
    assert m, host.address
    port = int(m.group(1))
    assert port > 0
    assert not os.path.exists(host.socket)

    async def main():
        h = await connect(("127.0.0.1", port), "host")
        try:
            info = await execute(h, "__org.aemu_query-host")
            assert info["qmp"] == host.address and info["pid"] == host.popen.pid
            vm = await create_vm(h, "t", args=["0", "10"], paused=True)
            assert vm["qmp"] == f"unix:{host.vm_socket('t')}"   # VMs stay on unix sockets
        finally:
            await disconnect(h)

    run(main())
    assert host.stop() == 0


# -- robustness -------------------------------------------------------------------------

def test_raw_clients_and_half_messages(serve):
    """Negotiation on the wire; clients that leave mid-message or mid-command
    change nothing."""
    host = serve()

    async def setup():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "busy", args=["1000", "10"])
            await create_vm(h, "held", args=["1000", "10"], paused=True)
        finally:
            await disconnect(h)

    run(setup())
    busy = host.vm_socket("busy")

    sock, greeting = raw_connect(busy)
    with sock:
        assert greeting["QMP"]["version"]["qemu"] == {"major": 9, "minor": 2, "micro": 0}
        assert greeting["QMP"]["capabilities"] == []
        sock.sendall(b'{"execute":"query-status","id":1}')
        reply = json.loads(raw_line(sock))
        assert reply["id"] == 1 and reply["error"]["class"] == "CommandNotFound"
        sock.sendall(b'{"execute":"qmp_capabilities","id":"n"}')
        assert json.loads(raw_line(sock)) == {"return": {}, "id": "n"}
        sock.sendall(b'{"execute": "query-status", "id": [1, {"x": null}]}')
        assert json.loads(raw_line(sock)) == {"return": {"running": True, "status": "running"},
                                              "id": [1, {"x": None}]}
        sock.sendall(b'{"execute": "query-st')        # half a message, then gone
    for path in (busy, host.socket):                  # nothing but half a message
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(T)
        s.connect(path)
        s.sendall(b'{"execute": "qmp_capabil')
        s.close()

    # a client that goes away during a command that waits: it still completes
    held = host.vm_socket("held")
    sock, _ = raw_connect(held)
    with sock:
        sock.sendall(b'{"execute":"qmp_capabilities"}')
        raw_line(sock)
        sock.sendall(b'{"execute":"__org.aemu_run-until","arguments":{"ns":50000000}}')

    async def check():
        b = await connect(busy, "busy")
        hc = await connect(host.socket, "host")
        v = await connect(held, "held")
        try:
            first = await execute(b, "__org.aemu_query-run")
            assert first["status"] == "running"
            await asyncio.sleep(0.25)
            assert (await execute(b, "__org.aemu_query-run"))["cycles"] > first["cycles"]
            assert len(await execute(hc, "__org.aemu_vm-list")) == 2

            async def stopped_at_target():
                while True:
                    info = await execute(v, "__org.aemu_query-run")
                    if info["status"] == "paused" and info["virtual-ns"] >= 50_000_000:
                        return info
                    await asyncio.sleep(0.02)
            info = await asyncio.wait_for(stopped_at_target(), T)
            assert info["virtual-ns"] == 50_000_000
        finally:
            await disconnect(b, hc, v)

    run(check())
    assert host.stop() == 0


def test_serve_usage_errors(base):
    r = subprocess.run(aemu_cmd("serve", "--state-dir", base / "s", "--allow-dir",
                                base / "missing"),
                       capture_output=True, text=True, timeout=30, cwd=NEUTRAL_CWD)
    assert r.returncode == 2 and "--allow-dir" in r.stderr and "not a directory" in r.stderr
    (base / "file").write_text("")
    r = subprocess.run(aemu_cmd("serve", "--state-dir", base / "file" / "s"),
                       capture_output=True, text=True, timeout=30, cwd=NEUTRAL_CWD)
    assert r.returncode == 1 and r.stderr.startswith("aemu: serve: state dir "), r.stderr
    assert "Traceback" not in r.stderr


def test_second_host_on_same_state_dir(serve, base, procs):
    first = serve()
    second = Proc(aemu_cmd("serve", "--state-dir", first.state_dir), base, "second")
    procs.append(second)
    assert second.wait() == 1
    assert re.search(r"aemu: serve: another aemu serve uses .*state", second.stderr), \
        second.stderr

    async def main():                  # the first one is untouched
        h = await connect(first.socket, "host")
        try:
            info = await execute(h, "__org.aemu_query-host")
            assert info["pid"] == first.popen.pid
        finally:
            await disconnect(h)

    run(main())
    assert first.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_host_and_removes_sockets(serve, sig):
    host = serve()
    vms = host.state_dir / "vms"

    async def main():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "a", args=["1000", "10"])
            await create_vm(h, "b", args=["1000", "10"], paused=True)
        finally:
            await disconnect(h)
        a = await connect(host.vm_socket("a"), "a")
        try:
            assert await status(a) == "running"
            host.popen.send_signal(sig)
            event = await next_event(a)
            assert event["event"] == "SHUTDOWN"
            assert event["data"] == {"guest": False, "reason": "host-signal"}
        finally:
            await disconnect(a)

    run(main())
    assert host.wait() == 0, host.stderr
    assert not os.path.exists(host.socket)
    assert sorted(p.name for p in vms.iterdir()) == ["a.log", "b.log"]
    assert "Traceback" not in host.stderr, host.stderr


def test_stale_sockets_after_kill(serve):
    """A host killed with SIGKILL leaves its sockets; the next one replaces them."""
    first = serve()

    async def make():
        h = await connect(first.socket, "host")
        try:
            await create_vm(h, "a", args=["0", "10"], paused=True)
        finally:
            await disconnect(h)

    run(make())
    first.kill()
    assert os.path.exists(first.socket) and os.path.exists(first.vm_socket("a"))
    second = serve(name="serve2")

    async def check():
        h = await connect(second.socket, "host")
        try:
            assert await execute(h, "__org.aemu_vm-list") == []
            await create_vm(h, "a", args=["0", "10"], paused=True)    # replaces a.qmp
            v = await connect(second.vm_socket("a"), "a")
            assert await status(v) == "paused"
            await disconnect(v)
        finally:
            await disconnect(h)

    run(check())
    assert second.stop() == 0


def test_host_quit(serve):
    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        await create_vm(h, "a", args=["1000", "10"])
        a = await connect(host.vm_socket("a"), "a")
        try:
            assert await execute(h, "quit") == {}
            event = await next_event(a)
            assert (event["event"], event["data"]) == (
                "SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        finally:
            await disconnect(a, h)

    run(main())
    assert host.wait() == 0
    assert not os.path.exists(host.socket) and not os.path.exists(host.vm_socket("a"))


# -- aemu qmp -----------------------------------------------------------------------------

def qmp_cli(state: Path, *args: Any, input: "str | None" = None) -> subprocess.CompletedProcess:
    return subprocess.run(aemu_cmd("qmp", "--state-dir", state, *args), input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30, cwd=NEUTRAL_CWD)


def test_qmp_cli(serve):
    host = serve()
    state = host.state_dir

    r = qmp_cli(state, "host", "vm-create", "name=x", f"firmware={IDLE}", 'args=["1","10"]',
                "paused=true")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["name"] == "x" and info["status"] == "paused" and info["args"] == ["1", "10"]

    r = qmp_cli(state, "x", "query-status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"running": False, "status": "paused"}

    r = qmp_cli(state, "x", "read-memory", '{"addr": 4, "size": 8}')     # prefix added
    assert r.returncode == 0, r.stderr
    assert len(base64.b64decode(json.loads(r.stdout)["data"])) == 8

    r = qmp_cli(state, "x", "no-such-command")
    assert r.returncode == 1
    assert "CommandNotFound" in r.stderr and "no-such-command" in r.stderr

    r = qmp_cli(state, "x", "query-status", "--wait-event", "SHUTDOWN", "--timeout", "0.3")
    assert r.returncode == 1 and "no SHUTDOWN event within 0.3 s" in r.stderr

    r = qmp_cli(state, "nosuchvm", "query-status")
    assert r.returncode == 2
    assert "cannot connect to" in r.stderr and str(state / "vms" / "nosuchvm.qmp") in r.stderr

    r = qmp_cli(state, "x", "cont", "--wait-event", "SHUTDOWN", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "{}"
    event = json.loads(lines[-1])
    assert event["event"] == "SHUTDOWN"
    assert event["data"] == {"guest": True, "reason": "guest-shutdown"}

    r = qmp_cli(state, "host", "vm-list")
    assert r.returncode == 0
    assert [(vm["name"], vm["status"]) for vm in json.loads(r.stdout)] == [("x", "shutdown")]
    assert host.stop() == 0


def test_qmp_cli_quit(serve):
    host = serve()
    state = host.state_dir
    for name in ("q1", "q2", "q3"):
        r = qmp_cli(state, "host", "vm-create", f"name={name}", f"firmware={IDLE}")
        assert r.returncode == 0, r.stderr
        r = qmp_cli(state, name, "quit")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert not os.path.exists(host.vm_socket(name))
    r = qmp_cli(state, "host", "quit")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert host.wait() == 0
    assert not os.path.exists(host.socket)


def test_client_close_after_server_closed(serve):
    """aemu.host.client.Client.close() after the server hung up (quit) is quiet:
    qemu.qmp's disconnect() re-raises the reader's EOFError otherwise."""
    from aemu.host.client import Client

    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "a", args=["1000", "10"])
        finally:
            await disconnect(h)
        client = Client()
        await client.connect(host.vm_socket("a"))
        assert await client.execute("query-run") != {}       # prefix added
        await client.execute("quit")
        await async_wait_for(lambda: not os.path.exists(host.vm_socket("a")))
        await asyncio.sleep(0.1)                             # the EOF has arrived
        await asyncio.wait_for(client.close(), T)

    run(main())
    assert host.stop() == 0


def test_qmp_cli_shell(serve):
    host = serve()
    r = qmp_cli(host.state_dir, "host", "vm-create", "name=sh", f"firmware={IDLE}",
                "paused=true")
    assert r.returncode == 0, r.stderr
    r = qmp_cli(host.state_dir, "sh", input="query-status\nhelp\nquery-name\nbogus-cmd\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "connected to sh (aemu " in out
    assert '"status": "paused"' in out
    assert '"name": "sh"' in out
    for name in ("query-status", "cont", "system_reset", "pmemsave",
                 "read-memory  (__org.aemu_read-memory)"):
        assert name in out, name
    assert "error: CommandNotFound" in out
    assert host.stop() == 0


# -- aemu run --qmp ---------------------------------------------------------------------

def test_run_qmp_until_guest_exits(base, procs):
    sock = str(base / "run.qmp")
    p = Proc(aemu_cmd("run", "--qmp", f"unix:{sock}", "--paused", IDLE, "1", "10"),
             base, "run")
    procs.append(p)
    p.wait_stderr(r"QMP on unix:")
    assert mode(sock) == 0o600

    async def main():
        c = await connect(sock, "run")
        try:
            assert await execute(c, "query-status") == {"running": False, "status": "paused"}
            await execute(c, "cont")
            assert (await next_event(c))["event"] == "RESUME"
            event = await next_event(c)
            assert event["event"] == "SHUTDOWN"
            assert event["data"] == {"guest": True, "reason": "guest-shutdown"}
        finally:
            await disconnect(c)

    run(main())
    assert p.wait() == 0, p.stderr
    assert "idle: 10 ticks, 10 wakeups" in p.stdout
    assert not os.path.exists(sock)


def test_run_qmp_quit(base, procs):
    sock = str(base / "run.qmp")
    p = Proc(aemu_cmd("run", "--qmp", f"unix:{sock}", "--paused", IDLE, "1", "10"),
             base, "run")
    procs.append(p)
    p.wait_stderr(r"QMP on unix:")

    async def main():
        c = await connect(sock, "run")
        try:
            assert await status(c) == "paused"
            assert await execute(c, "quit") == {}
            event = await next_event(c)
            assert (event["event"], event["data"]) == (
                "SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        finally:
            await disconnect(c)

    run(main())
    assert p.wait() == 0, p.stderr
    assert not os.path.exists(sock)
    assert p.stdout == ""                       # the guest never ran


def test_run_qmp_sigterm_and_sigint(base, procs):
    """SIGTERM ends `aemu run --qmp` as it ends QEMU: SHUTDOWN (host-signal),
    status 0; SIGINT interrupts it (130), as it interrupts `aemu run`.  The
    socket goes away either way."""
    sock = str(base / "run.qmp")
    for sig, expected in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        p = Proc(aemu_cmd("run", "--qmp", f"unix:{sock}", IDLE, "1000", "10"), base, "run")
        procs.append(p)
        p.wait_stderr(r"QMP on unix:")

        async def main(p: Proc = p, sig: int = sig) -> None:
            c = await connect(sock, "run")
            try:
                assert await status(c) == "running"
                p.popen.send_signal(sig)
                if sig == signal.SIGTERM:
                    event = await next_event(c)
                    assert (event["event"], event["data"]) == (
                        "SHUTDOWN", {"guest": False, "reason": "host-signal"})
            finally:
                await disconnect(c)

        run(main())
        assert p.wait() == expected, p.stderr
        assert not os.path.exists(sock)
        assert "Traceback" not in p.stderr


def test_run_qmp_guest_fault(base, procs):
    """A guest that faults ends `aemu run --qmp` with the fault's status."""
    sock = str(base / "run.qmp")
    p = Proc(aemu_cmd("run", "--qmp", f"unix:{sock}", FAULT, "0"), base, "run")
    procs.append(p)
    assert p.wait() == 139
    assert re.search(r"aemu: guest fault: illegal address 0x1800000 at pc 0x[0-9a-f]+ "
                     r"\(vector 12\)", p.stderr), p.stderr
    assert p.stdout == "fault: loading from 0x1800000 after 0 ms\n"
    assert not os.path.exists(sock)
