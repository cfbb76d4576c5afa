"""Live migration end to end: real `aemu serve` hosts (and `aemu run
--incoming`, `aemu migrate`) as subprocesses, driven over their QMP sockets
with qemu.qmp, as tests/test_serve.py does.

The guest is tests/firmware/migrate/pattern.elf on a 16 MiB board (QEMU's
"A-B" migration guest): it increments the first byte of every page of a
13 MiB buffer, forever.  Its RAM passes ``check_pattern_ram`` at any
stopping point, so a destination whose RAM does not after a migration got a
page wrong.  With a destination made ``paused``, the migrated state is
compared with the source's exactly (registers, clock, every byte of RAM).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_guest import PATTERN_ELF, PATTERN_RAM, check_pattern_ram, pattern_layout

from test_serve import (NEUTRAL_CWD, T, Proc, aemu_cmd, async_wait_for, base,
                        connect, create_vm, disconnect, error_desc, execute, execute_error,
                        next_event, procs, run, serve, status)

#: test_serve's fixtures, used here by name
FIXTURES = (base, procs, serve)

PATTERN = str(PATTERN_ELF)
BUF, NPAGES = pattern_layout(PATTERN_ELF)
MIB = 1 << 20
ENDED = ("completed", "failed", "cancelled")


# -- helpers ---------------------------------------------------------------------------
def two_hosts(serve, base: Path, *extra: Any):
    """Two hosts, each with its own state dir; both may use files under
    ``base`` (the other host's state dir included)."""
    h1 = serve("--allow-dir", base, *extra, state=base / "s1", name="serve1")
    h2 = serve("--allow-dir", base, *extra, state=base / "s2", name="serve2")
    return h1, h2


async def pattern_vm(h, name: str, **kw: Any) -> dict:
    """A pattern.elf VM on the 16 MiB board, paced "fast"."""
    return await create_vm(h, name, firmware=PATTERN, **{"ram_size": PATTERN_RAM,
                                                         "pace": "fast", **kw})


def run_and_stop(coro: Any, *hosts: Any, **run_kw: Any) -> None:
    """Run a test's coroutine, then stop each host: every one exits 0."""
    run(coro, **run_kw)
    for host in hosts:
        assert host.stop() == 0


@dataclass
class Session:
    """QMP clients of a test, disconnected (last first) when it ends: ``h``
    those of the hosts; ``src``/``dst``/``info`` those of ``host_pair``'s
    migration (``info``: what the destination's vm-create answered)."""
    h: list
    clients: list
    src: Any = None
    dst: Any = None
    info: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """Where the destination listens."""
        return self.info["incoming"]

    async def attach(self, host: Any, vm: str, label: str) -> Any:
        """A client of VM ``vm``'s own socket, disconnected at the end."""
        client = await connect(host.vm_socket(vm), label)
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def host_session(*hosts: tuple[Any, str]):
    """Clients of the hosts' sockets, each ``(host, label)``."""
    h = [await connect(host.socket, label) for host, label in hosts]
    s = Session(h=h, clients=list(h))
    try:
        yield s
    finally:
        await disconnect(*reversed(s.clients))


@contextlib.asynccontextmanager
async def host_pair(src_host: Any, dst_host: Any = None, incoming: str = "tcp:127.0.0.1:0",
                    *, vm: str = "a", dst_vm: "str | None" = None, connect_dst: bool = True,
                    src_caps: "dict | None" = None, dst_caps: "dict | None" = None,
                    src_params: "dict | None" = None, **dst_kw: Any):
    """A pattern VM ``vm`` on the source host and one waiting for it
    (``incoming``, vm-create's ``dst_kw``) on the destination host, with
    clients ``src`` and (``connect_dst``) ``dst`` of theirs; the
    destination's capabilities, then the source's, set as given.

    Two hosts: clients h1 and h2, the VMs both named ``vm``.  One host
    (``dst_host`` None): client h, the destination VM ``dst_vm`` ("b")."""
    if dst_host is None:
        hosts, dst_host, dst_vm = [(src_host, "h")], src_host, dst_vm or "b"
    else:
        hosts, dst_vm = [(src_host, "h1"), (dst_host, "h2")], dst_vm or vm
    async with host_session(*hosts) as s:
        await pattern_vm(s.h[0], vm)
        s.info = await pattern_vm(s.h[-1], dst_vm, incoming=incoming, **dst_kw)
        s.src = await s.attach(src_host, vm, "src")
        if connect_dst:
            s.dst = await s.attach(dst_host, dst_vm, "dst")
        if dst_caps:
            await caps(s.dst, **dst_caps)
        if src_caps:
            await caps(s.src, **src_caps)
        if src_params:
            await params(s.src, **src_params)
        yield s


async def caps(c, **states: bool) -> None:
    await execute(c, "migrate-set-capabilities", {"capabilities": [
        {"capability": k.replace("_", "-"), "state": v} for k, v in states.items()]})


async def params(c, **values: Any) -> None:
    await execute(c, "migrate-set-parameters", {k.replace("_", "-"): v
                                                for k, v in values.items()})


async def query(c) -> dict:
    return await execute(c, "query-migrate")


async def wait_status(c, *wanted: str, timeout: float = 20.0) -> dict:
    """Poll query-migrate until its status is one of ``wanted`` (default: an
    end state)."""
    wanted = wanted or ENDED
    deadline = time.monotonic() + timeout
    while True:
        info = await query(c)
        if info.get("status") in wanted:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"query-migrate stayed {info.get('status')}: {info}")
        await asyncio.sleep(0.02)


async def events_until(c, done, timeout: float = 20.0) -> list[dict]:
    """Events (name and data) up to and including the first for which
    ``done(event)`` holds."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        e = await next_event(c, timeout=max(deadline - time.monotonic(), 0.01))
        seen.append({"event": e["event"], "data": e.get("data")})
        if done(seen[-1]):
            return seen


def migration_end(e: dict) -> bool:
    return e["event"] == "MIGRATION" and e["data"]["status"] in ENDED


def statuses(events: list[dict]) -> list[str]:
    return [e["data"]["status"] for e in events if e["event"] == "MIGRATION"]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


async def read_ram(c, size: int = PATTERN_RAM) -> bytes:
    """Guest RAM over QMP, 1 MiB at a time."""
    out = bytearray()
    for addr in range(0, size, MIB):
        data = await execute(c, "__org.aemu_read-memory", {"addr": addr, "size": MIB})
        out += base64.b64decode(data["data"])
    return bytes(out)


async def pmem(c, path: Path) -> bytes:
    """Guest RAM through pmemsave into a file the host may write."""
    assert await execute(c, "pmemsave", {"val": 0, "size": PATTERN_RAM,
                                         "filename": str(path)}) == {}
    data = path.read_bytes()
    path.unlink()
    return data


async def page_byte(c, page: int = 0) -> int:
    data = await execute(c, "__org.aemu_read-memory", {"addr": BUF + page * 4096, "size": 1})
    return base64.b64decode(data["data"])[0]


async def keeps_running(c) -> None:
    """The guest's sweep goes on: page 0's byte changes (pace fast: many
    sweeps per second)."""
    first = await page_byte(c)
    deadline = time.monotonic() + T
    while await page_byte(c) == first:
        assert time.monotonic() < deadline, "the guest does not sweep"
        await asyncio.sleep(0.01)
    assert await status(c) == "running"


async def warmed_up(c) -> None:
    """The source guest printed A and swept a few times."""
    deadline = time.monotonic() + T
    while (await execute(c, "__org.aemu_query-run"))["cycles"] < 2_000_000:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def observe(c) -> dict:
    """A stopped VM's whole state as QMP shows it (RAM as its digest, and
    checked with check_pattern_ram)."""
    run_info = await execute(c, "__org.aemu_query-run")
    ram = await read_ram(c)
    check_pattern_ram(ram, BUF, NPAGES)
    return {"regs": await execute(c, "__org.aemu_query-registers"),
            "cycles": run_info["cycles"], "insns": run_info["insns"],
            "ns": run_info["virtual-ns"], "pc": run_info["pc"],
            "ram": hashlib.sha256(ram).hexdigest()}


def free_port() -> int:
    """A TCP port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_of(uri: str) -> int:
    m = re.fullmatch(r"tcp:127\.0\.0\.1:(\d+)", uri)
    assert m, uri
    return int(m.group(1))


async def aemu(*args: Any, timeout: float = 30.0) -> tuple[int, str, str]:
    """An `aemu` subprocess run to its end (cwd outside the repository)."""
    proc = await asyncio.create_subprocess_exec(
        *aemu_cmd(*args), cwd=NEUTRAL_CWD, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# -- 1. two hosts, tcp and unix ------------------------------------------------------------
def test_migrate_between_two_hosts(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        # tcp, port 0: the destination says which port it listens on
        async with host_pair(src_host, dst_host) as p:
            h1, h2, src, dst, info = *p.h, p.src, p.dst, p.info
            assert info["status"] == "inmigrate" and info["running"] is False
            port = port_of(info["incoming"])
            assert port > 0
            assert await status(dst) == "inmigrate"
            listening = await query(dst)
            assert listening["status"] == "setup"
            assert listening["socket-address"] == [
                {"type": "inet", "host": "127.0.0.1", "port": str(port)}]
            assert [v["incoming"] for v in await execute(h2, "__org.aemu_vm-list")] == [
                info["incoming"]]
            assert await query(src) == {}

            await caps(dst, events=True)
            await caps(src, events=True, return_path=True)
            got = {c["capability"]: c["state"]
                   for c in await execute(src, "query-migrate-capabilities")}
            assert got["events"] and got["return-path"] and not got["multifd"]
            await warmed_up(src)
            await keeps_running(src)
            assert await execute(src, "migrate", {"uri": info["incoming"]}) == {}

            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "device", "completed"], seen
            passes = [e["data"]["pass"] for e in seen if e["event"] == "MIGRATION_PASS"]
            # pass 1 is the first dirty-log sync, at setup (as QEMU's); then one a pass
            assert passes[:2] == [1, 2] and passes == sorted(passes), seen
            order = names(seen)
            assert order.index("MIGRATION_PASS") > order.index("MIGRATION")
            assert "STOP" in order and order.index("STOP") < len(order) - 1
            assert "RESUME" not in order, seen

            arrived = await events_until(dst, lambda e: e["event"] == "RESUME")
            assert statuses(arrived) == ["active", "completed"], arrived
            # (a STOP before completed is a divergence from QEMU, see
            # test_destination_events_as_qemu)
            assert [n for n in names(arrived) if n != "STOP"] == [
                "MIGRATION", "MIGRATION", "RESUME"], arrived

            assert await execute(src, "query-status") == {"running": False,
                                                          "status": "postmigrate"}
            assert await execute(dst, "query-status") == {"running": True, "status": "running"}
            done = await query(src)
            assert done["status"] == "completed"
            assert done["ram"]["total"] == PATTERN_RAM
            assert done["ram"]["normal"] >= NPAGES and done["downtime"] >= 0
            assert done["ram"]["transferred"] >= NPAGES * 4096
            assert "blocked-reasons" not in done and "error-desc" not in done
            dst_done = await query(dst)
            assert dst_done["status"] == "completed"
            assert dst_done["ram"]["normal"] >= NPAGES
            # the source stays stopped
            before = (await execute(src, "__org.aemu_query-run"))["cycles"]
            await asyncio.sleep(0.05)
            assert (await execute(src, "__org.aemu_query-run"))["cycles"] == before

            await keeps_running(dst)
            await execute(dst, "stop")
            check_pattern_ram(await read_ram(dst), BUF, NPAGES)

            # unix: in the destination host's state dir; a destination made
            # paused stays paused, with exactly the source's state
            sock = dst_host.state_dir / "b.mig"
            await pattern_vm(h1, "b")
            info = await pattern_vm(h2, "b", incoming=f"unix:{sock}", paused=True)
            assert info["incoming"] == f"unix:{sock}" and os.path.exists(sock)
            src_b = await p.attach(src_host, "b", "src_b")
            dst_b = await p.attach(dst_host, "b", "dst_b")
            assert (await query(dst_b))["socket-address"] == [{"type": "unix",
                                                               "path": str(sock)}]
            await warmed_up(src_b)
            # QEMU's "channels" form; no return path (QEMU's default)
            await execute(src_b, "migrate", {"channels": [{
                "channel-type": "main",
                "addr": {"transport": "socket", "type": "unix", "path": str(sock)}}]})
            assert (await wait_status(src_b))["status"] == "completed"
            assert (await wait_status(dst_b))["status"] == "completed"
            assert await status(src_b) == "postmigrate"
            assert await status(dst_b) == "paused"
            assert not os.path.exists(sock)            # the listener is gone
            theirs, ours = await observe(src_b), await observe(dst_b)
            assert theirs == ours
            await execute(dst_b, "cont")
            await keeps_running(dst_b)

    run_and_stop(main(), src_host, dst_host)


def test_destination_events_as_qemu(serve, base):
    """QEMU's destination goes inmigrate -> running with RESUME only (or to
    paused silently, when started with -S): no STOP, it was never running."""
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host, dst_caps={"events": True},
                             src_caps={"return_path": True}) as p:
            await execute(p.src, "migrate", {"uri": p.uri})
            arrived = await events_until(p.dst, lambda e: e["event"] == "RESUME")
            assert names(arrived) == ["MIGRATION", "MIGRATION", "RESUME"], arrived

    run_and_stop(main(), src_host, dst_host)


# -- 2. incoming "defer", migrate-incoming, multifd + zstd ---------------------------------
def test_deferred_incoming_multifd_zstd(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host, "defer") as p:
            h2, src, dst = p.h[1], p.src, p.dst
            assert p.info["status"] == "inmigrate" and "incoming" not in p.info
            assert await status(dst) == "inmigrate"
            assert await query(dst) == {}

            # only a VM waiting in inmigrate takes migrate-incoming
            err = await execute_error(src, "migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
            assert error_desc(err) == "'-incoming' was not specified on the command line"
            assert await status(src) == "running" and await query(src) == {}

            # multifd and its compression are set on both sides before the
            # destination listens
            for c in (src, dst):
                await caps(c, events=True, multifd=True, return_path=True)
                await params(c, multifd_channels=3, multifd_compression="zstd")
                got = await execute(c, "query-migrate-parameters")
                assert (got["multifd-channels"], got["multifd-compression"]) == (3, "zstd")
            assert await execute(dst, "migrate-incoming", {"uri": "tcp:127.0.0.1:0"}) == {}
            listening = await query(dst)
            assert listening["status"] == "setup"
            [addr] = listening["socket-address"]
            assert addr["type"] == "inet" and addr["host"] == "127.0.0.1"
            port = int(addr["port"])
            assert port > 0
            assert [v.get("incoming") for v in await execute(h2, "__org.aemu_vm-list")] == [
                f"tcp:127.0.0.1:{port}"]
            err = await execute_error(dst, "migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
            # (QEMU says "The incoming migration has already been started")
            assert error_desc(err) in ("The incoming migration has already been started",
                                       "There's a migration process in progress")
            assert statuses(await events_until(dst, lambda e: e["event"] == "MIGRATION")) == [
                "setup"]

            await warmed_up(src)
            # (the switch-over estimate counts page bytes, not the compressed
            # ones: else this guest, which keeps every page dirty, never
            # converges)
            await execute(src, "migrate", {"uri": f"tcp:127.0.0.1:{port}"})
            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "device", "completed"], seen
            arrived = await events_until(dst, lambda e: e["event"] == "RESUME")
            assert statuses(arrived) == ["active", "completed"], arrived
            done = await query(src)
            assert done["ram"]["multifd-bytes"] > 0
            # zstd: the 13 MiB buffer is mostly the same byte
            assert done["ram"]["transferred"] < NPAGES * 4096 // 4, done["ram"]
            assert done["ram"]["normal"] >= NPAGES
            assert (await query(dst))["ram"]["multifd-bytes"] > 0
            assert await status(src) == "postmigrate"
            await keeps_running(dst)
            # after it arrived, the VM is no longer waiting
            err = await execute_error(dst, "migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
            assert error_desc(err) == "The incoming migration has already been started"
            await execute(dst, "stop")
            check_pattern_ram(await pmem(dst, dst_host.state_dir / "ram.bin"), BUF, NPAGES)

    run_and_stop(main(), src_host, dst_host)


# -- 3. aemu migrate ------------------------------------------------------------------------
def test_aemu_migrate_cli(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        # --json, the destination listening already; --dest gets the same settings
        async with host_pair(src_host, dst_host, connect_dst=False) as p:
            h1, h2, src = *p.h, p.src
            await warmed_up(src)
            code, out, err = await aemu("migrate", "a", p.uri, "--state-dir",
                                        src_host.state_dir, "--dest", dst_host.vm_socket("a"),
                                        "--json")
            assert code == 0, (out, err)
            assert err == ""                          # no progress bar with --json
            result = json.loads(out)
            assert result["status"] == "completed"
            assert result["ram"]["total"] == PATTERN_RAM and "downtime" in result
            assert await status(src) == "postmigrate"
            dst = await p.attach(dst_host, "a", "dst")
            got = {c["capability"]: c["state"]
                   for c in await execute(dst, "query-migrate-capabilities")}
            assert got["return-path"] and got["events"]
            await keeps_running(dst)

            # a progress bar and the summary; the destination waits with
            # "defer": aemu migrate starts its migrate-incoming, multifd on both
            await pattern_vm(h1, "b")
            await pattern_vm(h2, "b", incoming="defer")
            port = free_port()
            code, out, err = await aemu("migrate", "b", f"tcp:127.0.0.1:{port}", "--state-dir",
                                        src_host.state_dir, "--dest", dst_host.vm_socket("b"),
                                        "--multifd", "2", "--compress", "zstd",
                                        "--max-bandwidth", "0", "--downtime-limit", "500")
            assert code == 0, (out, err)
            assert "status: completed" in out.splitlines()
            assert re.search(r"passes: \d+; throughput .* Mbit/s; multifd ", out), out
            assert re.search(r"migrate: +\d+%\|", err), err
            dst_b = await p.attach(dst_host, "b", "dst_b")
            got = await execute(dst_b, "query-migrate-parameters")
            assert (got["multifd-channels"], got["multifd-compression"],
                    got["max-bandwidth"], got["downtime-limit"]) == (2, "zstd", 0, 500)
            await keeps_running(dst_b)
            await execute(dst_b, "stop")
            check_pattern_ram(await read_ram(dst_b), BUF, NPAGES)

            # nobody listens: exit 1, the reason, the source VM carries on
            await pattern_vm(h1, "c")
            src_c = await p.attach(src_host, "c", "src_c")
            port = free_port()
            code, out, err = await aemu("migrate", "c", f"tcp:127.0.0.1:{port}",
                                        "--state-dir", src_host.state_dir)
            assert code == 1, (out, err)
            assert "status: failed" in out.splitlines()
            assert re.search(rf"^error: .*127\.0\.0\.1:{port}.*[Cc]onnection refused", out,
                             re.M), out
            assert await execute(src_c, "query-status") == {"running": True,
                                                            "status": "running"}
            await keeps_running(src_c)

            # a bad setting, a file the host may not write
            code, out, err = await aemu("migrate", "c", "tcp:127.0.0.1:1", "--state-dir",
                                        src_host.state_dir, "--migrate-set", "bogus=1")
            assert code == 2 and "no capability or parameter 'bogus'" in err, err
            code, out, err = await aemu("migrate", "c", "file:/etc/aemu-x", "--state-dir",
                                        src_host.state_dir)
            assert code == 1 and "outside the directories" in err, err
            assert await status(src_c) == "running"

            # --timeout: cancelled when it is not done by then
            info = await pattern_vm(h2, "c", incoming="tcp:127.0.0.1:0")
            code, out, err = await aemu("migrate", "c", info["incoming"], "--state-dir",
                                        src_host.state_dir, "--max-bandwidth", "1M",
                                        "--timeout", "0.5", "--json")
            assert code == 1, (out, err)
            assert json.loads(out)["status"] == "cancelled"
            assert await status(src_c) == "running"

    run_and_stop(main(), src_host, dst_host, timeout=90)


def test_aemu_migrate_cli_no_such_vm(base):
    async def main():
        for args in (["nosuch", "tcp:127.0.0.1:1"],
                     [str(base / "nosuch.qmp"), "tcp:127.0.0.1:1"]):
            code, out, err = await aemu("migrate", *args, "--state-dir", base)
            assert (code, out) == (1, "")
            assert err.startswith("aemu: migrate: ") and "nosuch.qmp" in err, err
            assert "Traceback" not in err, err

    run(main())


# -- 4. aemu run --incoming ---------------------------------------------------------------------
def run_incoming(base: Path, name: str, *args: Any) -> Proc:
    """`aemu run --ram-size 16M ... pattern.elf` (cwd: ``base``)."""
    return Proc(aemu_cmd("run", "--ram-size", "16M", *args, PATTERN), base, name)


def test_aemu_run_incoming(serve, base, procs):
    host = serve("--allow-dir", base, state=base / "s1")

    async def main():
        async with host_session((host, "h")) as p:
            [h] = p.h
            # unix: the run waits, says where, and runs what arrives
            sock = base / "run1.mig"
            dest = run_incoming(base, "run1", "--incoming", f"unix:{sock}")
            procs.append(dest)
            dest.wait_stderr(rf"aemu: incoming migration on unix:{re.escape(str(sock))}\n")
            assert dest.stdout == ""                      # not started yet
            await pattern_vm(h, "a")
            src = await p.attach(host, "a", "src")
            await warmed_up(src)
            await caps(src, return_path=True)
            await execute(src, "migrate", {"uri": f"unix:{sock}"})
            assert (await wait_status(src))["status"] == "completed"
            assert await status(src) == "postmigrate"
            # the guest goes on sweeping there: more B (its A went out on the source)
            await async_wait_for(lambda: dest.stdout.count("B") >= 3, what="B from the run")
            assert re.fullmatch(r"B+", dest.stdout), dest.stdout[:40]
            assert dest.popen.poll() is None
            dest.kill()

            # defer: migrate-incoming over the run's --qmp socket
            qsock = base / "run2.qmp"
            dest = run_incoming(base, "run2", "--incoming", "defer", "--qmp", f"unix:{qsock}")
            procs.append(dest)
            dest.wait_stderr(r"QMP on unix:")
            d = await connect(str(qsock), "run2")
            p.clients.append(d)
            assert await status(d) == "inmigrate"
            sock = base / "run2.mig"
            await caps(d, events=True)
            await execute(d, "migrate-incoming", {"uri": f"unix:{sock}"})
            assert (await query(d))["status"] == "setup"
            await pattern_vm(h, "b")
            src_b = await p.attach(host, "b", "src_b")
            await warmed_up(src_b)
            await execute(src_b, "migrate", {"uri": f"unix:{sock}"})
            arrived = await events_until(d, lambda e: e["event"] == "RESUME")
            assert statuses(arrived) == ["setup", "active", "completed"], arrived
            assert await status(src_b) == "postmigrate"
            await keeps_running(d)
            await execute(d, "stop")
            check_pattern_ram(await read_ram(d), BUF, NPAGES)
            await execute(d, "quit")
            await disconnect(d)
            assert await asyncio.to_thread(dest.wait) == 0

    run_and_stop(main(), host)


def test_aemu_run_incoming_errors(base):
    async def main():
        cases = [
            (["--incoming", "bogus:x"], 1, r"aemu: --incoming bogus:x: unsupported migration "
                                           r"URI 'bogus:x'"),
            (["--incoming", "tcp:127.0.0.1:99999"], 1, r"aemu: --incoming tcp:127\.0\.0\.1"
                                                      r":99999: .*port"),
            (["--incoming", "unix:/nonexistent/dir/x"], 1, r"aemu: --incoming unix:"
                                                          r"/nonexistent/dir/x: "),
            (["--incoming", "file:/nonexistent/x"], 1, r"aemu: --incoming file:/nonexistent"
                                                      r"/x: cannot read"),
            (["--incoming", "defer"], 2, r"--incoming defer needs --qmp"),
            (["--incoming", "tcp:127.0.0.1:0", "--migrate-set", "bogus=1"], 1,
             r"no capability or parameter 'bogus'"),
            (["--incoming", "tcp:127.0.0.1:0", "--migrate-set", "mapped-ram=on",
              "--migrate-set", "multifd=on", "--migrate-set", "multifd-compression=zstd"], 1,
             r"[Mm]apped-ram.*incompatible with multifd compression"),
            (["--migrate-set", "multifd=on"], 2, r"--migrate-set needs --incoming"),
        ]
        results = await asyncio.gather(*(aemu("run", "--ram-size", "16M", *args, PATTERN)
                                         for args, _, _ in cases))
        for (args, want, pattern), (code, out, err) in zip(cases, results):
            assert code == want and re.search(pattern, err), (args, code, err)
            assert "Traceback" not in err, err

    run(main())


# -- 5. HMP -------------------------------------------------------------------------------------
async def hmp(c, line: str) -> str:
    return await execute(c, "human-monitor-command", {"command-line": line})


def test_hmp_migration(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host) as p:
            src, dst, info = p.src, p.dst, p.info
            assert await hmp(src, "info migrate") == "Status: none\r\n"
            assert (await hmp(dst, "info migrate")).startswith("Status: setup\r\n")
            assert "return-path: off\r\n" in await hmp(src, "info migrate_capabilities")
            assert await hmp(src, "migrate_set_capability return-path on") == ""
            assert "return-path: on\r\n" in await hmp(src, "info migrate_capabilities")
            assert await hmp(src, "migrate_set_parameter max-bandwidth 64M") == ""
            assert "max-bandwidth: 67108864\r\n" in await hmp(src, "info migrate_parameters")
            assert (await execute(src, "query-migrate-parameters"))["max-bandwidth"] == 64 * MIB
            assert await hmp(src, "migrate_set_parameter downtime-limit 250") == ""
            assert "downtime-limit: 250\r\n" in await hmp(src, "info migrate_parameters")

            # errors print as QEMU's monitor does, and change nothing
            assert (await hmp(src, "migrate_set_capability bogus on")).startswith("Error: ")
            assert (await hmp(src, "migrate_set_capability events maybe")).startswith(
                "Error: usage: migrate_set_capability")
            assert (await hmp(src, "migrate_set_parameter bogus 1")).startswith("Error: ")
            assert (await hmp(src, "migrate_set_parameter downtime-limit x")).startswith(
                "Error: ")
            assert (await hmp(src, "migrate_set_parameter multifd-channels 0")).startswith(
                "Error: ")
            assert await hmp(src, "migrate") == "Error: usage: migrate [-d] uri\r\n"
            assert "outside the directories" in await hmp(src, "migrate -d file:/etc/aemu-x")
            assert await hmp(src, "info migrate") == "Status: none\r\n"

            # slow enough to be caught active, then cancelled
            assert await hmp(src, "migrate_set_parameter max-bandwidth 1M") == ""
            await warmed_up(src)
            assert await hmp(src, "migrate -d " + info["incoming"]) == ""
            await wait_status(src, "active")
            text = await hmp(src, "info migrate")
            assert text.startswith("Status: active\r\n"), text
            assert re.search(r"RAM info: transferred \d+ bytes, remaining \d+ bytes, total "
                             rf"{PATTERN_RAM} bytes", text), text
            assert "Expected downtime (ms): " in text
            assert (await hmp(src, "migrate -d " + info["incoming"])) == (
                "Error: There's a migration process in progress\r\n")
            assert (await hmp(src, "migrate_set_capability events on")).startswith("Error: ")
            assert await hmp(src, "migrate_cancel") == ""
            await wait_status(src, "cancelled")
            assert (await hmp(src, "info migrate")).startswith("Status: cancelled\r\n")
            assert await hmp(src, "info status") == "VM status: running\r\n"
            text = await hmp(dst, "info migrate")
            await wait_status(dst, "failed")
            text = await hmp(dst, "info migrate")
            assert text.startswith("Status: failed\r\n") and "\r\nError: " in text, text
            await keeps_running(src)

    run_and_stop(main(), src_host, dst_host)


# -- 6. migrate_cancel over QMP ---------------------------------------------------------------
def test_cancel_and_migrate_again(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host) as p:
            h2, src, dst, info = p.h[1], p.src, p.dst, p.info
            assert await execute(src, "migrate_cancel") == {}      # nothing to cancel
            await caps(dst, events=True)
            await caps(src, events=True, return_path=True)
            await params(src, max_bandwidth=MIB)
            await warmed_up(src)
            await execute(src, "migrate", {"uri": info["incoming"]})
            active = await wait_status(src, "active")
            assert active["ram"]["total"] == PATTERN_RAM and "expected-downtime" in active
            assert await status(src) == "running"

            # while it runs: no second migration, no capability changes, only
            # the live parameters
            err = await execute_error(src, "migrate", {"uri": info["incoming"]})
            assert error_desc(err) == "There's a migration process in progress"
            err = await execute_error(src, "migrate-set-capabilities", {"capabilities": [
                {"capability": "auto-converge", "state": True}]})
            assert error_desc(err) == "There's a migration process in progress"
            err = await execute_error(src, "migrate-set-parameters", {"multifd-channels": 4})
            assert "cannot be changed while a migration is in progress" in error_desc(err)
            await params(src, downtime_limit=200, max_bandwidth=MIB)

            assert await execute(src, "migrate_cancel") == {}
            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "cancelling", "cancelled"], seen
            assert "STOP" not in names(seen)
            cancelled = await query(src)
            assert cancelled["status"] == "cancelled" and "error-desc" not in cancelled
            assert await execute(src, "query-status") == {"running": True, "status": "running"}
            await keeps_running(src)

            # the destination fails cleanly and stays stopped
            failed = await wait_status(dst, "failed")
            assert failed["error-desc"], failed
            assert statuses(await events_until(dst, migration_end)) == ["active", "failed"]
            assert await status(dst) != "running"
            assert [v["status"] for v in await execute(h2, "__org.aemu_vm-list")] != [
                "running"]

            # the same source migrates to a fresh destination
            info = await pattern_vm(h2, "a2", incoming="tcp:127.0.0.1:0")
            await params(src, max_bandwidth=0)
            await execute(src, "migrate", {"uri": info["incoming"]})
            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "device", "completed"], seen
            assert await status(src) == "postmigrate"
            a2 = await p.attach(dst_host, "a2", "a2")
            assert (await wait_status(a2))["status"] == "completed"
            await keeps_running(a2)
            await execute(a2, "stop")
            check_pattern_ram(await read_ram(a2), BUF, NPAGES)

    run_and_stop(main(), src_host, dst_host)      # nothing logged (no unretrieved future)


def test_no_stray_error_after_cancel(serve, base):
    """A cancelled migration with a return path, then the next migration:
    the host logs nothing (the broken return path's future was retrieved)."""
    host = serve(state=base / "s1")

    async def main():
        async with host_pair(host, connect_dst=False, src_caps={"return_path": True},
                             src_params={"max_bandwidth": MIB}) as p:
            src = p.src
            await execute(src, "migrate", {"uri": p.uri})
            await wait_status(src, "active")
            await execute(src, "migrate_cancel")
            assert (await wait_status(src))["status"] == "cancelled"
            # the next migration replaces the cancelled one
            await execute(src, "migrate", {"uri": f"file:{host.state_dir}/x.mig"})
            await wait_status(src)

    run_and_stop(main(), host)


def test_remaining_counts_down_in_the_first_pass(serve, base):
    host = serve(state=base / "s1")

    async def main():
        async with host_pair(host, connect_dst=False,
                             src_params={"max_bandwidth": 2 * MIB}) as p:
            src = p.src
            await execute(src, "migrate", {"uri": p.uri})
            try:
                first = (await wait_status(src, "active"))["ram"]
                await asyncio.sleep(0.5)
                later = (await query(src))["ram"]
                assert later["dirty-sync-count"] == first["dirty-sync-count"] == 1
                assert later["transferred"] > first["transferred"]
                assert 0 < later["remaining"] < first["remaining"] <= PATTERN_RAM, (first, later)
            finally:
                await execute(src, "migrate_cancel")
                await wait_status(src)

    try:
        run(main())
    finally:
        assert host.stop() == 0


# -- 7. confinement; file: ----------------------------------------------------------------------
def test_confined_uris_and_file_migration(serve, base, procs):
    host = serve(state=base / "s1")                  # no --allow-dir for base here
    dst_host = serve(state=base / "s2", name="serve2")

    async def main():
        async with host_session((host, "h"), (dst_host, "h2")) as p:
            h, h2 = p.h
            await pattern_vm(h, "a")
            src = await p.attach(host, "a", "src")
            for uri in ("file:/etc/aemu-x", "unix:/tmp/aemu-outside.sock",
                        f"file:{base}/s2/x", "file:../x"):
                err = await execute_error(src, "migrate", {"uri": uri})
                assert ("outside the directories" in error_desc(err)
                        or "must be an absolute path" in error_desc(err)), (uri, err)
            err = await execute_error(src, "migrate", {"channels": [{
                "channel-type": "main", "addr": {"transport": "file",
                                                 "filename": "/etc/aemu-x"}}]})
            assert "outside the directories" in error_desc(err)
            assert not os.path.exists("/etc/aemu-x")
            assert not os.path.exists("/tmp/aemu-outside.sock")
            assert await query(src) == {} and await status(src) == "running"
            # nor may a destination listen or read there
            for uri in ("unix:/tmp/aemu-outside.sock", "file:/etc/passwd"):
                err = await execute_error(h, "__org.aemu_vm-create", {
                    "name": "in", "firmware": PATTERN, "ram-size": PATTERN_RAM,
                    "incoming": uri})
                assert "outside the directories" in error_desc(err), err
            await pattern_vm(h, "d", incoming="defer")
            d = await p.attach(host, "d", "d")
            err = await execute_error(d, "migrate-incoming", {"uri": "file:/etc/passwd"})
            assert "outside the directories" in error_desc(err)
            assert await status(d) == "inmigrate" and await query(d) == {}

            # a return path needs a socket: the migration fails, the VM goes on
            path = host.state_dir / "a.mig"
            await caps(src, return_path=True)
            await execute(src, "migrate", {"uri": f"file:{path}"})
            failed = await wait_status(src)
            assert failed["status"] == "failed" and "return-path" in failed["error-desc"]
            assert await status(src) == "running"

            # a file in the state dir
            await caps(src, return_path=False)
            await warmed_up(src)
            await execute(src, "migrate", {"uri": f"file:{path}"})
            assert (await wait_status(src))["status"] == "completed"
            assert await status(src) == "postmigrate"
            assert path.stat().st_size > NPAGES * 4096

            # a serve VM takes it in: the exact state, paused (a host may
            # read files in its own state dir only: copy it there)
            copy = dst_host.state_dir / "a.mig"
            copy.write_bytes(path.read_bytes())
            info = await pattern_vm(h2, "a", incoming=f"file:{copy}", paused=True)
            assert info["incoming"] == f"file:{copy}"
            dst = await p.attach(dst_host, "a", "dst")
            assert (await wait_status(dst))["status"] == "completed"
            assert await status(dst) == "paused"
            theirs, ours = await observe(src), await observe(dst)
            assert theirs == ours

            # mapped-ram: every page at its own offset, read back the same
            await pattern_vm(h, "m")
            m = await p.attach(host, "m", "m")
            await caps(m, mapped_ram=True)
            await warmed_up(m)
            mapped = host.state_dir / "m.mig"
            await execute(m, "migrate", {"uri": f"file:{mapped}"})
            assert (await wait_status(m))["status"] == "completed"
            assert await status(m) == "postmigrate"
            copy = dst_host.state_dir / "m.mig"
            copy.write_bytes(mapped.read_bytes())
            await pattern_vm(h2, "m", incoming=f"file:{copy}", paused=True)
            dst_m = await p.attach(dst_host, "m", "dst_m")
            assert (await wait_status(dst_m))["status"] == "completed"
            assert await observe(m) == await observe(dst_m)

            # and aemu run --incoming file: runs what the file holds
            run1 = run_incoming(base, "run1", "--incoming", f"file:{path}")
            procs.append(run1)
            run1.wait_stderr(r"aemu: incoming migration on file:")
            await async_wait_for(lambda: run1.stdout.count("B") >= 3, what="B from the run")
            assert re.fullmatch(r"B+", run1.stdout), run1.stdout[:40]
            assert run1.popen.poll() is None
            run1.kill()

    run_and_stop(main(), host, dst_host)


# -- 8. snapshots and blockers ------------------------------------------------------------------
FILEIO = str(Path(__file__).resolve().parent / "firmware" / "fileio-O2.elf")
FILE_OPEN_AT = 12_000          #: fileio-O2 holds fileio.tmp open through the host services


def test_snapshot_refused_during_migration(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host) as p:
            src, dst, info = p.src, p.dst, p.info
            busy = "a migration of this VM is in progress; try again when it is done"
            # a destination waiting for its migration has one in progress too
            err = await execute_error(dst, "__org.aemu_snapshot-save", {"tag": "x"})
            assert error_desc(err) == busy
            await params(src, max_bandwidth=MIB)
            await execute(src, "migrate", {"uri": info["incoming"]})
            await wait_status(src, "active")
            err = await execute_error(src, "__org.aemu_snapshot-save", {"tag": "x"})
            assert error_desc(err) == busy
            err = await execute_error(src, "__org.aemu_snapshot-load", {"tag": "x"})
            assert error_desc(err) == busy
            assert await hmp(src, "savevm x") == f"Error: {busy}\r\n"
            assert await execute(src, "snapshot-save", {"job-id": "j", "tag": "x",
                                                        "vmstate": "d", "devices": []}) == {}
            while True:
                [job] = await execute(src, "query-jobs")
                if job["status"] == "concluded":
                    break
                await asyncio.sleep(0.02)
            assert job.get("error") == busy, job
            assert (await query(src))["status"] == "active"
            assert await execute(src, "__org.aemu_snapshot-list") == []
            await execute(src, "migrate_cancel")
            assert (await wait_status(src))["status"] == "cancelled"
            # afterwards it saves
            saved = await execute(src, "__org.aemu_snapshot-save", {"tag": "after"})
            assert saved["status"] == "running"

    run_and_stop(main(), src_host, dst_host)


def test_blocked_migration(serve, base):
    host = serve(state=base / "s1")
    fsroot = host.state_dir / "fsroot"
    fsroot.mkdir()

    async def main():
        async with host_session((host, "h")) as p:
            await create_vm(p.h[0], "f", firmware=FILEIO, paused=True, pace="fast",
                            fs_root=str(fsroot))
            f = await p.attach(host, "f", "f")
            assert await query(f) == {}
            assert await execute(f, "__org.aemu_run-until", {"cycles": FILE_OPEN_AT}) == {
                "status": "paused", "cycles": FILE_OPEN_AT}
            blocked = await query(f)
            [reason] = blocked["blocked-reasons"]
            assert "host file(s) open" in reason and set(blocked) == {"blocked-reasons"}
            assert f"Blocked: {reason}\r\n" in await hmp(f, "info migrate")
            err = await execute_error(f, "migrate", {"uri": f"file:{host.state_dir}/f.mig"})
            assert error_desc(err) == f"disallowing migration: {reason}"
            assert await query(f) == blocked
            assert not (host.state_dir / "f.mig").exists()
            assert await status(f) == "paused"

    run_and_stop(main(), host)


# -- 9. vm-destroy mid-migration ----------------------------------------------------------------
def test_destroy_during_migration(serve, base):
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        # the source goes away: the destination fails cleanly
        async with host_pair(src_host, dst_host, src_caps={"return_path": True},
                             src_params={"max_bandwidth": MIB}) as p:
            h1, h2, src, dst = *p.h, p.src, p.dst
            await execute(src, "migrate", {"uri": p.uri})
            await wait_status(src, "active")
            t0 = time.monotonic()
            assert await execute(h1, "__org.aemu_vm-destroy", {"name": "a"}) == {}
            assert time.monotonic() - t0 < 5.0
            assert await execute(h1, "__org.aemu_vm-list") == []
            failed = await wait_status(dst, "failed")
            assert failed["error-desc"]
            assert await status(dst) != "running"
            assert await execute(h2, "__org.aemu_vm-destroy", {"name": "a"}) == {}

            # the destination goes away: the source fails and its VM goes on
            await pattern_vm(h1, "b")
            info = await pattern_vm(h2, "b", incoming="tcp:127.0.0.1:0")
            src_b = await p.attach(src_host, "b", "src_b")
            await caps(src_b, events=True, return_path=True)
            await params(src_b, max_bandwidth=MIB)
            await execute(src_b, "migrate", {"uri": info["incoming"]})
            await wait_status(src_b, "active")
            t0 = time.monotonic()
            assert await execute(h2, "__org.aemu_vm-destroy", {"name": "b"}) == {}
            assert time.monotonic() - t0 < 5.0
            failed = await wait_status(src_b)
            assert failed["status"] == "failed" and failed["error-desc"], failed
            assert statuses(await events_until(src_b, migration_end)) == [
                "setup", "active", "failed"]
            assert await status(src_b) == "running"
            await keeps_running(src_b)

            # a destination that only listens goes away at once too
            await pattern_vm(h2, "c", incoming="tcp:127.0.0.1:0")
            t0 = time.monotonic()
            assert await execute(h2, "__org.aemu_vm-destroy", {"name": "c"}) == {}
            assert time.monotonic() - t0 < 5.0

    run_and_stop(main(), src_host, dst_host)


# -- failures at the destination; pause-before-switchover -----------------------------------------
def test_destination_refuses_and_paused_switchover(serve, base):
    host = serve(state=base / "s1")

    async def main():
        async with host_session((host, "h")) as p:
            [h] = p.h

            async def pair(n: int, **dst_args: Any):
                await pattern_vm(h, f"s{n}")
                info = await pattern_vm(h, f"d{n}", incoming="tcp:127.0.0.1:0", **dst_args)
                src = await p.attach(host, f"s{n}", f"s{n}")
                dst = await p.attach(host, f"d{n}", f"d{n}")
                return src, dst, info["incoming"]

            # a destination with another RAM size: both fail, the source runs on
            src, dst, uri = await pair(1, ram_size=PATTERN_RAM + MIB)
            await caps(src, return_path=True)
            await execute(src, "migrate", {"uri": uri})
            failed = await wait_status(dst)
            assert failed["status"] == "failed"
            assert failed["error-desc"].startswith(
                f"the stream has {PATTERN_RAM} bytes of RAM, this VM {PATTERN_RAM + MIB}")
            assert (await wait_status(src))["status"] == "failed"
            assert await status(src) == "running" and await status(dst) == "inmigrate"
            await keeps_running(src)

            # multifd compression set on one side only
            src, dst, uri = await pair(2)
            await caps(src, multifd=True)
            await caps(dst, multifd=True)
            await params(src, multifd_compression="zstd")
            await execute(src, "migrate", {"uri": uri})
            failed = await wait_status(dst)
            assert failed["status"] == "failed"
            assert "set multifd-compression on both sides" in failed["error-desc"], failed
            assert (await wait_status(src))["status"] == "failed"
            assert await status(src) == "running"

            # pause-before-switchover: the source waits, stopped, for migrate-continue
            src, dst, uri = await pair(3, paused=True)
            await caps(src, pause_before_switchover=True, events=True, return_path=True)
            err = await execute_error(src, "migrate-continue", {"state": "pre-switchover"})
            assert error_desc(err) == "no outgoing migration"
            await execute(src, "migrate", {"uri": uri})
            await wait_status(src, "pre-switchover")
            assert await status(src) == "finish-migrate"
            err = await execute_error(src, "migrate-continue", {"state": "active"})
            assert error_desc(err) == "Migration not in expected state: pre-switchover"
            assert await execute(src, "migrate-continue", {"state": "pre-switchover"}) == {}
            seen = await events_until(src, migration_end)
            assert statuses(seen) == ["setup", "active", "pre-switchover", "device",
                                      "completed"], seen
            assert (await wait_status(dst))["status"] == "completed"
            assert await status(dst) == "paused"
            assert await observe(src) == await observe(dst)

            # a paused source arrives paused, though the destination would start
            src, dst, uri = await pair(5)
            await execute(src, "stop")
            await execute(src, "migrate", {"uri": uri})
            assert (await wait_status(src))["status"] == "completed"
            assert (await wait_status(dst))["status"] == "completed"
            assert await status(dst) == "paused"
            assert await observe(src) == await observe(dst)

            # the source VM goes away in pre-switchover: no hang
            src, dst, uri = await pair(4)
            await caps(src, pause_before_switchover=True, return_path=True)
            await execute(src, "migrate", {"uri": uri})
            await wait_status(src, "pre-switchover")
            t0 = time.monotonic()
            assert await execute(h, "__org.aemu_vm-destroy", {"name": "s4"}) == {}
            assert time.monotonic() - t0 < 5.0
            assert (await wait_status(dst))["status"] == "failed"

    run_and_stop(main(), host)


def test_host_stops_during_migration(serve, base):
    """SIGTERM to both hosts while a migration runs between them: both end
    cleanly (exit 0, nothing on stderr), at once."""
    src_host, dst_host = two_hosts(serve, base)

    async def main():
        async with host_pair(src_host, dst_host, connect_dst=False,
                             src_caps={"return_path": True},
                             src_params={"max_bandwidth": MIB}) as p:
            await execute(p.src, "migrate", {"uri": p.uri})
            await wait_status(p.src, "active")

    run(main())
    t0 = time.monotonic()
    assert src_host.stop() == 0
    assert dst_host.stop() == 0
    assert time.monotonic() - t0 < 8.0
