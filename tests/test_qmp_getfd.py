"""Descriptors passed to a QMP socket (SCM_RIGHTS) and the getfd / closefd
commands (aemu.host.server's FdPassingTransport, aemu.host.migration_commands).

A QmpServer on a Unix socket serves the VM command table (so getfd and
closefd are the real ones) for a target whose ``migration`` is a real
MigrationManager, plus two test commands: ``x-pending-fds`` (how many
descriptors the session holds) and ``x-hold`` (an async command that waits
until the test releases it).  Clients: qemu.qmp's QMPClient with
``send_fd_scm`` (in a thread on an asyncio loop of its own: qemu.qmp reaches
for the transport's raw socket, which uvloop's transports do not expose) and
a raw client using ``socket.sendmsg``.  Every test runs on both loops.

Every await is bounded; sockets live in a short temporary directory.
"""
from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import json
import os
import shutil
import socket
import tempfile
from types import SimpleNamespace
from typing import Any, Iterable

from aemu.host.commands import CommandTable
from aemu.host.migration_commands import vm as vm_commands
from aemu.host.server import MAX_FDS_PER_MESSAGE, MAX_PENDING_FDS, QmpServer
from aemu.migration import MigrationManager
from aemu.savevm.blocker import Blockers

T = 5.0
NO_FD = "No file descriptor supplied via SCM_RIGHTS"

TABLE = CommandTable(vm_commands)


@TABLE.command("x-pending-fds")
def _pending_fds(ctx) -> int:
    return len(ctx.session.fds)


@TABLE.command("x-hold")
async def _hold(ctx) -> None:
    await ctx.target.release.wait()


# -- helpers ---------------------------------------------------------------------------
def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def ino(fd: int) -> int:
    return os.fstat(fd).st_ino


def rights(fds: Iterable[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", list(fds)).tobytes())]


async def until(predicate, what: str, timeout: float = T) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def at_eof(read_end: int, timeout: float = T) -> bool:
    """Every write end of a pipe is closed: reading gives b"" (not EAGAIN)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(read_end, False)
    deadline = loop.time() + timeout
    while True:
        try:
            if os.read(read_end, 4096) == b"":
                return True
        except BlockingIOError:
            pass
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.005)


class Pipe:
    """A pipe whose write end we send; ``eof()``: nobody holds a write end."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def drop_ours(self) -> None:
        """Close our write end (the server's copies are then the only ones)."""
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    async def eof(self, timeout: float = T) -> bool:
        self.drop_ours()
        return await at_eof(self.r, timeout)

    def close(self) -> None:
        self.drop_ours()
        os.close(self.r)


class Raw:
    """A raw QMP client on a non-blocking socket: sendmsg() with descriptors,
    replies read through the loop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.greeting: dict = {}

    @classmethod
    async def open(cls, address: Any, negotiate: bool = True) -> "Raw":
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, address), T)
        raw = cls(sock)
        raw.greeting = await raw.recv()
        assert "QMP" in raw.greeting
        if negotiate:
            assert await raw.cmd("qmp_capabilities") == {"return": {}}
        return raw

    def send(self, data: bytes, fds: Iterable[int] = ()) -> None:
        fds = list(fds)
        sent = self.sock.sendmsg([data], rights(fds) if fds else [])
        assert sent == len(data)

    def send_cmd(self, name: str, args: dict | None = None, fds: Iterable[int] = ()) -> None:
        msg: dict[str, Any] = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.send(json.dumps(msg).encode(), fds)

    async def recv(self) -> dict:
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buf:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), T)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    async def cmd(self, name: str, args: dict | None = None, fds: Iterable[int] = ()) -> dict:
        self.send_cmd(name, args, fds)
        return await self.recv()

    async def ok(self, name: str, args: dict | None = None, fds: Iterable[int] = ()) -> Any:
        reply = await self.cmd(name, args, fds)
        assert "return" in reply, reply
        return reply["return"]

    async def err(self, name: str, args: dict | None = None, fds: Iterable[int] = ()) -> str:
        reply = await self.cmd(name, args, fds)
        assert "error" in reply, reply
        assert reply["error"]["class"] == "GenericError", reply
        return reply["error"]["desc"]

    def close(self) -> None:
        self.sock.close()


class Served:
    def __init__(self, server: QmpServer, target: Any, address: Any) -> None:
        self.server, self.target, self.address = server, target, address

    @property
    def registered(self) -> dict[str, int]:
        return self.target.migration.fds

    async def connect(self, negotiate: bool = True) -> Raw:
        return await Raw.open(self.address, negotiate)

    async def sessions_gone(self) -> None:
        await until(lambda: not self.server.sessions, "the sessions to end")

    async def leave_and_check_closed(self, clients: Iterable[Raw], pipes: Iterable[Pipe],
                                     before: int) -> None:
        """The clients leave; once their sessions ended, the server's copies
        of the pipes' write ends are gone (each pipe reads EOF; then closed)
        and the process holds as many descriptors as ``before``."""
        for client in clients:
            client.close()
        await self.sessions_gone()
        for p in pipes:
            assert await p.eof()                  # the server's copies are gone
            p.close()
        assert open_fds() == before


@contextlib.asynccontextmanager
async def served(tcp: bool = False):
    tmp = tempfile.mkdtemp(prefix="aemu-fd-")
    target = SimpleNamespace(migration=MigrationManager(None, blockers=Blockers()),
                             release=asyncio.Event())
    server = QmpServer(TABLE, target)
    try:
        where = await server.listen("tcp:127.0.0.1:0" if tcp else f"unix:{tmp}/qmp.sock")
        if tcp:
            host, _, port = where[len("tcp:"):].rpartition(":")
            address: Any = (host, int(port))
        else:
            address = where[len("unix:"):]
        yield Served(server, target, address)
    finally:
        target.release.set()
        await asyncio.wait_for(server.close(), T)
        target.migration.close()
        shutil.rmtree(tmp, ignore_errors=True)


def in_thread(coro_fn, *args: Any) -> Any:
    """Run a coroutine function on a fresh asyncio loop in another thread (for
    qemu.qmp's send_fd_scm, which needs asyncio's socket transport)."""
    return asyncio.to_thread(lambda: asyncio.run(asyncio.wait_for(coro_fn(*args), 2 * T)))


# -- qemu.qmp --------------------------------------------------------------------------
def test_qemu_qmp_send_fd_scm_then_getfd_and_closefd(run) -> None:
    from qemu.qmp import ExecuteError, QMPClient

    async def client(path: str, fd: int) -> tuple[Any, Any, Any, str, str]:
        qmp = QMPClient("getfd-test")
        await qmp.connect(path)
        try:
            qmp.send_fd_scm(fd)
            got = await qmp.execute("getfd", {"fdname": "mig"})
            pending = await qmp.execute("x-pending-fds")
            # without a descriptor: QEMU's error
            try:
                await qmp.execute("getfd", {"fdname": "other"})
                no_fd = ""
            except ExecuteError as exc:
                no_fd = exc.error.error.desc
            closed = await qmp.execute("closefd", {"fdname": "mig"})
            try:
                await qmp.execute("closefd", {"fdname": "mig"})
                again = ""
            except ExecuteError as exc:
                again = exc.error.error.desc
            return got, pending, closed, no_fd, again
        finally:
            await qmp.disconnect()

    async def main():
        async with served() as s:
            pipe = Pipe()
            # what getfd registers, and under which name
            seen: list[tuple[str, int]] = []
            add_fd = s.target.migration.add_fd

            def spy(name: str, fd: int) -> None:
                seen.append((name, ino(fd)))
                add_fd(name, fd)
            s.target.migration.add_fd = spy
            got, pending, closed, no_fd, again = await in_thread(client, s.address, pipe.w)
            assert got == {} and pending == 0 and closed == {}
            assert seen == [("mig", ino(pipe.w))]
            assert no_fd == NO_FD
            assert again == "File descriptor named 'mig' not found"
            assert s.registered == {}
            assert await pipe.eof()              # closefd closed the server's copy
            pipe.close()
            await s.sessions_gone()
    run(main())


def test_qemu_qmp_fd_stays_registered_after_the_client_leaves(run) -> None:
    """getfd's descriptor belongs to the VM (until closefd or the VM ends),
    not to the session that passed it."""
    from qemu.qmp import QMPClient

    async def client(path: str, fds: list[int]) -> None:
        qmp = QMPClient("getfd-test")
        await qmp.connect(path)
        try:
            for i, fd in enumerate(fds):
                qmp.send_fd_scm(fd)
                assert await qmp.execute("getfd", {"fdname": f"fd{chr(97 + i)}"}) == {}
        finally:
            await qmp.disconnect()

    async def main():
        async with served() as s:
            pipes = [Pipe() for _ in range(3)]
            await in_thread(client, s.address, [p.w for p in pipes])
            await s.sessions_gone()
            assert {k: ino(v) for k, v in s.registered.items()} == {
                "fda": ino(pipes[0].w), "fdb": ino(pipes[1].w), "fdc": ino(pipes[2].w)}
            # and a second client may close one of them
            raw = await s.connect()
            assert await raw.ok("closefd", {"fdname": "fdb"}) == {}
            raw.close()
            assert await pipes[1].eof()
            assert not await pipes[0].eof(timeout=0.05)
            s.target.migration.close()            # the VM ends: the rest is closed
            assert await pipes[0].eof() and await pipes[2].eof()
            for p in pipes:
                p.close()
    run(main())


# -- a raw sendmsg client --------------------------------------------------------------
def test_raw_fd_with_the_command_and_before_it(run) -> None:
    async def main():
        async with served() as s:
            a, b = Pipe(), Pipe()
            raw = await s.connect()
            # in the same sendmsg as the command
            assert await raw.ok("getfd", {"fdname": "with"}, fds=[a.w]) == {}
            # with a byte of white space first (as qemu.qmp does), then the command
            raw.send(b" ", [b.w])
            assert await raw.ok("x-pending-fds") == 1
            assert await raw.ok("getfd", {"fdname": "before"}) == {}
            assert await raw.ok("x-pending-fds") == 0
            assert ino(s.registered["with"]) == ino(a.w)
            assert ino(s.registered["before"]) == ino(b.w)
            assert not os.get_inheritable(s.registered["with"])    # close-on-exec
            # getfd under a name in use replaces (and closes) the old descriptor
            c = Pipe()
            assert await raw.ok("getfd", {"fdname": "with"}, fds=[c.w]) == {}
            assert ino(s.registered["with"]) == ino(c.w)
            assert await a.eof()
            raw.close()
            await s.sessions_gone()
            assert set(s.registered) == {"with", "before"}
            for p in (a, b, c):
                p.close()
    run(main())


def test_raw_several_fds_are_taken_in_order(run) -> None:
    async def main():
        async with served() as s:
            pipes = [Pipe() for _ in range(5)]
            raw = await s.connect()
            # three in one message, two more in the next, then the getfds in one write
            raw.send(b" ", [p.w for p in pipes[:3]])
            raw.send(b"\n", [p.w for p in pipes[3:]])
            raw.send(b"".join(json.dumps({"execute": "getfd", "arguments": {"fdname": f"n{i}"},
                                          "id": i}).encode() for i in range(6)))
            replies = [await raw.recv() for _ in range(6)]
            assert replies[:5] == [{"return": {}, "id": i} for i in range(5)]
            assert replies[5] == {"error": {"class": "GenericError", "desc": NO_FD}, "id": 5}
            assert [ino(s.registered[f"n{i}"]) for i in range(5)] == [ino(p.w) for p in pipes]
            raw.close()
            for p in pipes:
                p.close()
    run(main())


def test_getfd_without_a_descriptor(run) -> None:
    async def main():
        async with served() as s:
            raw = await s.connect()
            assert await raw.err("getfd", {"fdname": "x"}) == NO_FD
            p = Pipe()
            assert await raw.ok("getfd", {"fdname": "x"}, fds=[p.w]) == {}
            assert await raw.err("getfd", {"fdname": "y"}) == NO_FD   # it was used up
            # another client's descriptor is not this session's
            other = await s.connect()
            other.send(b" ", [p.w])
            assert await other.ok("x-pending-fds") == 1
            assert await raw.err("getfd", {"fdname": "y"}) == NO_FD
            assert await raw.err("closefd", {"fdname": "y"}) == \
                "File descriptor named 'y' not found"
            assert set(s.registered) == {"x"}
            # a bad name: the error, and the descriptor is not kept
            q = Pipe()
            assert await raw.err("getfd", {"fdname": "0bad"}, fds=[q.w]) == \
                "Parameter 'fdname' expects a name not starting with a digit"
            assert await q.eof()
            assert await raw.ok("x-pending-fds") == 0
            raw.close()
            other.close()
            await s.sessions_gone()
            p.close()
            q.close()
    run(main())


def test_getfd_before_negotiation_keeps_the_descriptor_pending(run) -> None:
    async def main():
        async with served() as s:
            p = Pipe()
            raw = await s.connect(negotiate=False)
            reply = await raw.cmd("getfd", {"fdname": "x"}, fds=[p.w])
            assert reply["error"]["class"] == "CommandNotFound"
            assert await raw.ok("qmp_capabilities") == {}
            assert await raw.ok("x-pending-fds") == 1
            assert await raw.ok("getfd", {"fdname": "x"}) == {}
            assert ino(s.registered["x"]) == ino(p.w)
            raw.close()
            p.close()
    run(main())


def test_fd_sent_while_a_command_runs(run) -> None:
    """A getfd (with its descriptor) queued behind a running command gets
    that descriptor when its turn comes."""
    async def main():
        async with served() as s:
            p = Pipe()
            raw = await s.connect()
            raw.send_cmd("x-hold")
            raw.send_cmd("getfd", {"fdname": "late"}, fds=[p.w])
            raw.send_cmd("x-pending-fds")
            await asyncio.sleep(0.05)
            assert "late" not in s.registered
            s.target.release.set()
            assert [await raw.recv() for _ in range(3)] == [
                {"return": {}}, {"return": {}}, {"return": 0}]
            assert ino(s.registered["late"]) == ino(p.w)
            raw.close()
            p.close()
    run(main())


# -- leaks and floods ------------------------------------------------------------------
def test_unclaimed_fds_are_closed_when_the_session_ends(run) -> None:
    async def main():
        async with served() as s:
            before = open_fds()
            pipes = [Pipe() for _ in range(4)]
            raw = await s.connect()
            raw.send(b" ", [p.w for p in pipes[:2]])
            raw.send(b" ", [p.w for p in pipes[2:]])
            assert await raw.ok("x-pending-fds") == 4
            (session,) = s.server.sessions
            held = list(session.fds)
            assert all(fd_is_open(fd) for fd in held)
            await s.leave_and_check_closed([raw], pipes, before)    # the client goes: EOF
            assert session.fds == collections.deque()
            assert s.registered == {}
    run(main())


def test_unclaimed_fds_are_closed_when_the_server_closes(run) -> None:
    async def main():
        pipes = [Pipe() for _ in range(3)]
        async with served() as s:
            raw = await s.connect()
            raw.send(b" ", [p.w for p in pipes])
            assert await raw.ok("x-pending-fds") == 3
        # served() closed the server with the client still connected
        for p in pipes:
            assert await p.eof()
            p.close()
        raw.close()
    run(main())


def test_an_fd_flood_is_capped(run) -> None:
    """A client that sends descriptors and never takes them: the session holds
    at most MAX_PENDING_FDS, closes the rest, and goes on serving."""
    async def main():
        async with served() as s:
            before = open_fds()
            p = Pipe()
            raw = await s.connect()
            most = 0
            for i in range(100):                      # 1600 descriptors
                raw.send(b" ", [p.w] * MAX_FDS_PER_MESSAGE)
                if i % 4 == 3:
                    pending = await raw.ok("x-pending-fds")
                    assert pending <= MAX_PENDING_FDS
                    most = max(most, open_fds() - before)
            assert await raw.ok("x-pending-fds") == MAX_PENDING_FDS
            # the pipe, two sockets, what the session holds (and maybe a loop fd or two)
            assert most <= 3 + MAX_PENDING_FDS + 4, most
            # more than one message's worth at once: the kernel closes the excess
            raw.send(b" ", [p.w] * (MAX_FDS_PER_MESSAGE + 8))
            assert await raw.ok("x-pending-fds") == MAX_PENDING_FDS
            # getfd takes the oldest; the session still works
            assert await raw.ok("getfd", {"fdname": "one"}) == {}
            assert await raw.ok("x-pending-fds") == MAX_PENDING_FDS - 1
            assert await raw.ok("closefd", {"fdname": "one"}) == {}
            await s.leave_and_check_closed([raw], [p], before)
    run(main())


def test_an_fd_flood_over_many_clients(run) -> None:
    async def main():
        async with served() as s:
            before = open_fds()
            p = Pipe()
            clients = [await s.connect() for _ in range(4)]
            # a few at a time (descriptors in flight count against the sender's
            # RLIMIT_NOFILE)
            for c in clients:
                for _ in range(4):
                    c.send(b" ", [p.w] * MAX_FDS_PER_MESSAGE)
                assert await c.ok("x-pending-fds") == MAX_PENDING_FDS
            for c in clients:
                assert await c.ok("x-pending-fds") == MAX_PENDING_FDS
            assert open_fds() - before <= 2 + 2 * 4 + 4 * MAX_PENDING_FDS + 4
            await s.leave_and_check_closed(clients, [p], before)
    run(main())


# -- TCP -------------------------------------------------------------------------------
def test_tcp_has_no_descriptors(run) -> None:
    async def main():
        async with served(tcp=True) as s:
            raw = await s.connect()
            assert await raw.err("getfd", {"fdname": "x"}) == NO_FD
            p = Pipe()
            with contextlib.suppress(OSError):        # TCP carries no descriptors
                raw.send(b" ", [p.w])
            assert await raw.ok("x-pending-fds") == 0
            assert await raw.err("getfd", {"fdname": "x"}) == NO_FD
            assert await p.eof()
            p.close()
            raw.close()
    run(main())


# -- a hosted VM -----------------------------------------------------------------------
def test_getfd_on_a_hosted_vm_socket(run) -> None:
    """The VM's own socket (aemu serve's HostedVm): getfd puts the descriptor
    into the VM's migration manager; destroying the VM closes it."""
    from test_qmp_protocol import live_vm

    async def main():
        async with live_vm() as live:
            p = Pipe()
            raw = await Raw.open(live.path)
            assert await raw.ok("getfd", {"fdname": "mig"}, fds=[p.w]) == {}
            assert ino(live.vm.migration.fds["mig"]) == ino(p.w)
            raw.send(b" ", [p.w])                     # one left pending
            assert await raw.err("getfd", {"fdname": "9"}) == \
                "Parameter 'fdname' expects a name not starting with a digit"
            raw.send(b" ", [p.w])
            assert await raw.ok("query-status") != {}
            raw.close()
            await until(lambda: not live.vm.server.sessions, "the session to end")
            assert not await p.eof(timeout=0.05)      # the VM still holds "mig"
            await asyncio.wait_for(live.host.destroy_vm("a"), T)
            assert await p.eof()
            p.close()
    run(main())
