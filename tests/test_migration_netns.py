"""Live migration between two hosts with their own addresses: two network
namespaces joined by a veth pair (10.77.0.1/24 and 10.77.0.2/24), an `aemu
serve` in each (``ip netns exec``), listening for QMP on its own TCP
address, and the VM's RAM crossing the veth.

Needs root and iproute2 (``ip netns add`` must work); skipped otherwise.
The test reaches each host's TCP control socket from a thread that entered
that host's namespace (setns) just to open the connection; the VMs' QMP
sockets are Unix sockets in the state dirs, which namespaces share.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from qemu.qmp import QMPClient
from migration_guest import PATTERN_ELF, PATTERN_RAM, check_pattern_ram

from conftest import FIRMWARE
from test_migration_serve import (BUF, NPAGES, ENDED, caps, keeps_running, migration_end,
                                  observe, query, read_ram, statuses, events_until,
                                  wait_status, warmed_up)
from test_serve import (T, Proc, aemu_cmd, base, connect, disconnect, execute,
                        run, status)

#: test_serve's fixture, used here by name
FIXTURES = (base,)

CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=T,
                          check=check)


class Namespaces:
    """Two network namespaces joined by a veth pair; processes started in
    them; everything removed by ``close``."""

    def __init__(self, base: Path) -> None:
        tag = f"{os.getpid()}"
        self.base = base
        self.ns = [f"aemu{tag}a", f"aemu{tag}b"]
        self.dev = [f"ae{tag}a", f"ae{tag}b"]
        self.addr = [f"{SUBNET}.1", f"{SUBNET}.2"]
        self.procs: list[Proc] = []
        self.made: list[str] = []

    def setup(self) -> None:
        for ns in self.ns:
            ip("netns", "del", ns, check=False)          # a leftover of a killed run
            ip("netns", "add", ns)
            self.made.append(ns)
        ip("link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1])
        for ns, dev, addr in zip(self.ns, self.dev, self.addr):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        for ns in self.made:
            ip("netns", "del", ns, check=False)      # the veth pair goes with them
        self.made.clear()

    def spawn(self, i: int, args: list[str], name: str) -> Proc:
        p = Proc(["ip", "netns", "exec", self.ns[i], *args], self.base, name)
        self.procs.append(p)
        return p

    def tx_bytes(self, i: int) -> int:
        out = ip("-n", self.ns[i], "-s", "-j", "link", "show", "dev", self.dev[i]).stdout
        return json.loads(out)[0]["stats64"]["tx"]["bytes"]

    def socket(self, i: int, host: str, port: int) -> Any:
        """A TCP connection made from inside namespace ``i`` (a thread enters
        it with setns, connects, and ends; the socket stays in it)."""
        import socket
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/var/run/netns/{self.ns[i]}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, os.strerror(err))
                finally:
                    os.close(fd)
                box["sock"] = socket.create_connection((host, port), timeout=T)
            except BaseException as exc:      # noqa: BLE001 - re-raised below
                box["exc"] = exc

        t = threading.Thread(target=work, name=f"netns-{self.ns[i]}")
        t.start()
        t.join(T)
        if "exc" in box:
            raise box["exc"]
        return box["sock"]


@pytest.fixture
def netns(base: Path) -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed")
    spaces = Namespaces(base)
    try:
        try:
            spaces.setup()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make network namespaces here: {' '.join(exc.cmd)}: "
                        f"{exc.stderr.strip()}")
        yield spaces
    finally:
        spaces.close()
        leftover = ip("netns", "list", check=False).stdout
        assert not any(ns in leftover for ns in spaces.ns), leftover


class NetHost:
    """`aemu serve` inside a namespace, QMP on its own TCP address."""

    def __init__(self, spaces: Namespaces, i: int) -> None:
        self.spaces, self.i = spaces, i
        self.state_dir = spaces.base / f"s{i + 1}"
        self.proc = spaces.spawn(i, aemu_cmd(
            "serve", "--state-dir", self.state_dir, "--allow-dir", FIRMWARE,
            "--listen", f"tcp:{spaces.addr[i]}:0"), f"serve{i + 1}")
        m = self.proc.wait_stderr(r"host QMP on tcp:([\d.]+):(\d+)\n")
        self.host, self.port = m.group(1), int(m.group(2))
        assert self.host == spaces.addr[i]

    def vm_socket(self, name: str) -> str:
        return str(self.state_dir / "vms" / f"{name}.qmp")

    async def control(self, name: str) -> QMPClient:
        sock = await asyncio.to_thread(self.spaces.socket, self.i, self.host, self.port)
        client = QMPClient(name)
        await asyncio.wait_for(client.connect(sock), T)
        return client

    def stop(self) -> int:
        self.proc.popen.terminate()
        code = self.proc.popen.wait(T)
        lines = self.proc.stderr.splitlines()
        # the start line, and the warning about a control socket off loopback
        assert sorted(lines, key=lambda line: "not a loopback address" in line) == [
            f"aemu: serve: state dir {self.state_dir}; host QMP on tcp:{self.host}:{self.port}",
            f"QMP listening on tcp:{self.host}:{self.port}, which is not a loopback address: "
            "anyone who can reach it controls the VM"], lines
        return code


def test_migrate_across_namespaces(netns: Namespaces):
    src_host, dst_host = NetHost(netns, 0), NetHost(netns, 1)

    async def main():
        h1 = await src_host.control("h1")
        h2 = await dst_host.control("h2")
        clients = [h1, h2]
        try:
            assert (await execute(h1, "__org.aemu_query-host"))["qmp"] == (
                f"tcp:{src_host.host}:{src_host.port}")
            common = {"firmware": str(PATTERN_ELF), "ram-size": PATTERN_RAM, "pace": "fast"}
            await execute(h1, "__org.aemu_vm-create", {"name": "a", **common})
            info = await execute(h2, "__org.aemu_vm-create", {
                "name": "a", **common, "paused": True, "incoming": f"tcp:{SUBNET}.2:0"})
            m = re.fullmatch(rf"tcp:{SUBNET}\.2:(\d+)", info["incoming"])
            assert m and int(m.group(1)) > 0, info
            src = await connect(src_host.vm_socket("a"), "src")
            dst = await connect(dst_host.vm_socket("a"), "dst")
            clients += [src, dst]
            assert await status(dst) == "inmigrate"
            await caps(src, events=True, return_path=True)
            await caps(dst, events=True)
            await warmed_up(src)
            sent_before = netns.tx_bytes(0)
            await execute(src, "migrate", {"uri": info["incoming"]})
            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "device", "completed"], seen
            arrived = await events_until(dst, migration_end)
            assert statuses(arrived) == ["active", "completed"], arrived
            done = await query(src)
            assert done["status"] == "completed" and done["ram"]["total"] == PATTERN_RAM
            # the pages went over the veth
            assert netns.tx_bytes(0) - sent_before >= NPAGES * 4096

            assert await status(src) == "postmigrate"
            assert await status(dst) == "paused"
            assert await observe(src) == await observe(dst)      # RAM checked there too
            await execute(dst, "cont")
            await keeps_running(dst)
            await execute(dst, "stop")
            check_pattern_ram(await read_ram(dst), BUF, NPAGES)
            assert (await wait_status(dst, *ENDED))["status"] == "completed"
        finally:
            await disconnect(*reversed(clients))

    run(main())
    assert src_host.stop() == 0
    assert dst_host.stop() == 0
